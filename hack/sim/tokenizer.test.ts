import { describe, expect, it } from 'vitest'
import { applyChatTemplate, countTokens, tokenize } from './tokenizer.js'

describe('tokenizer', () => {
  it('splits words and punctuation, keeping leading whitespace, and is reversible', () => {
    const text = 'Hello, world!  How are you_2?'
    const toks = tokenize(text)
    expect(toks).toEqual(['Hello', ',', ' world', '!', '  How', ' are', ' you_2', '?'])
    expect(toks.join('')).toBe(text)
    expect(countTokens(text)).toBe(toks.length)
    expect(countTokens('')).toBe(0)
  })

  it('handles non-ASCII letters as word characters', () => {
    expect(tokenize('héllo wörld')).toEqual(['héllo', ' wörld'])
  })

  it('templates a conversation so that the previous turn is a prefix of the next', () => {
    const turn1 = applyChatTemplate([{ role: 'user', content: 'hi' }])
    const turn2 = applyChatTemplate([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'again' },
    ])
    expect(turn1).toBe('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n')
    expect(turn2.startsWith(turn1)).toBe(true)
  })
})
