import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { getEncoding } from 'js-tiktoken'
import { afterAll, describe, expect, it } from 'vitest'
import { memoryLogger } from '../../log.js'
import {
  countBounded,
  EXACT_CHARS,
  estimateTokens,
  inputTokens,
  outputReservation,
  TokenCounters,
  tokenizersSettled,
} from './tokens.js'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

const cl100k = getEncoding('cl100k_base')

describe('estimateTokens (calibrated against cl100k_base)', () => {
  it('is within the documented band on prose, Markdown and code, erring high', async () => {
    const texts = {
      readme: await readFile(new URL('../../../README.md', import.meta.url), 'utf8'),
      code: await readFile(new URL('./local.ts', import.meta.url), 'utf8'),
      prose:
        'The quick brown fox jumps over the lazy dog. A gateway in production must know who is calling and stop anyone from eating the GPUs. '.repeat(
          20,
        ),
    }
    for (const [name, t] of Object.entries(texts)) {
      const ratio = estimateTokens(t) / cl100k.encode(t).length
      expect(ratio, name).toBeGreaterThan(0.97)
      expect(ratio, name).toBeLessThan(1.15)
    }
  })

  it('counts CJK about one token per character and numbers by digit groups', () => {
    const zh = '人工智能是计算机科学的一个分支，它企图了解智能的实质。'
    const ratio = estimateTokens(zh) / cl100k.encode(zh).length
    expect(ratio).toBeGreaterThan(0.75)
    expect(ratio).toBeLessThan(1.25)
    expect(estimateTokens('123456789')).toBe(3)
    expect(estimateTokens('')).toBe(0)
    expect(estimateTokens('😀😀')).toBe(3)
  })
})

describe('TokenCounters', () => {
  it('uses tiktoken for OpenAI-family names once loaded, the estimate before and otherwise', async () => {
    const log = memoryLogger()
    const c = new TokenCounters([], log)
    expect(c.forModel('llama-3.1-8b').kind).toBe('estimate')
    c.warm(['gpt-4-turbo'])
    await tokenizersSettled()
    const gpt4 = c.forModel('gpt-4-turbo')
    expect(gpt4.kind).toBe('tiktoken')
    const text = 'Tokenizers turn text into integers; <|endoftext|> is just text here.'
    expect(gpt4.count(text)).toBe(cl100k.encode(text, [], []).length)
  })

  it('follows the policy: a ratio, a tiktoken encoding, an HF tokenizer.json file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-tok-'))
    dirs.push(dir)
    // A tiny byte-level BPE in the tokenizer.json format (the real loading code, small data).
    const tokenizerJson = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: {
        type: 'ByteLevel',
        add_prefix_space: false,
        trim_offsets: true,
        use_regex: true,
      },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        vocab: {
          h: 0,
          e: 1,
          l: 2,
          o: 3,
          he: 4,
          ll: 5,
          hell: 6,
          hello: 7,
          Ġ: 8,
          w: 9,
          r: 10,
          d: 11,
          Ġw: 12,
        },
        merges: ['h e', 'l l', 'he ll', 'hell o', 'Ġ w'],
      },
    }
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson))
    const log = memoryLogger()
    const c = new TokenCounters(
      [
        { match: { kind: 'exact', value: 'ratio-model' }, charsPerToken: 2 },
        { match: { kind: 'prefix', value: 'my-llama' }, file: join(dir, 'tokenizer.json') },
        { match: { kind: 'regex', value: '^broken' }, file: join(dir, 'missing.json') },
        { match: { kind: 'exact', value: 'custom-gpt' }, tiktoken: 'cl100k_base' },
      ],
      log,
    )
    expect(c.forModel('ratio-model').count('abcdefg')).toBe(4)
    c.warm(['my-llama-8b', 'broken-1', 'custom-gpt'])
    await tokenizersSettled()
    const hf = c.forModel('my-llama-8b')
    expect(hf.kind).toBe('hf')
    // hello | Ġw | o | r | l | d
    expect(hf.count('hello world')).toBe(6)
    expect(c.forModel('broken-1').kind).toBe('estimate')
    expect(log.records.some((r) => r.level === 'error' && r.msg.includes('tokenizer failed'))).toBe(
      true,
    )
    expect(c.forModel('custom-gpt').kind).toBe('tiktoken')
  })

  it('extrapolates texts longer than the exact bound from their prefix', () => {
    let calls = 0
    const counter = {
      kind: 'ratio' as const,
      count: (t: string) => {
        calls++
        expect(t.length).toBeLessThanOrEqual(EXACT_CHARS)
        return Math.ceil(t.length / 4)
      },
    }
    expect(countBounded(counter, 'x'.repeat(EXACT_CHARS * 4))).toBe(EXACT_CHARS)
    expect(calls).toBe(1)
  })
})

describe('request token accounting', () => {
  const est = { kind: 'ratio' as const, count: (t: string) => t.length }
  it('counts chat messages, parts, tools and per-message overhead', () => {
    const n = inputTokens(
      'chat',
      {
        messages: [
          { role: 'system', content: 'abc' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hello' },
              { type: 'image_url', image_url: { url: 'x' } },
            ],
          },
        ],
        tools: [{ a: 1 }],
      },
      est,
    )
    expect(n).toBe(3 + (4 + 3) + (4 + 5 + 85) + '[{"a":1}]'.length)
  })

  it('counts completion prompts and embedding inputs in every form', () => {
    expect(inputTokens('completions', { prompt: 'abcd' }, est)).toBe(4)
    expect(inputTokens('completions', { prompt: ['ab', 'cd'] }, est)).toBe(4)
    expect(inputTokens('embeddings', { input: [1, 2, 3] }, est)).toBe(3)
    expect(inputTokens('embeddings', { input: [[1, 2], [3]] }, est)).toBe(3)
  })

  it('reserves output from max_completion_tokens / max_tokens, bounded, times n', () => {
    const r = { default: 100, max: 1000 }
    expect(outputReservation('chat', {}, r)).toBe(100)
    expect(outputReservation('chat', { max_tokens: 7 }, r)).toBe(7)
    expect(outputReservation('chat', { max_tokens: 7, max_completion_tokens: 9 }, r)).toBe(9)
    expect(outputReservation('chat', { max_tokens: 5000 }, r)).toBe(1000)
    expect(outputReservation('completions', { max_tokens: 10, n: 3 }, r)).toBe(30)
    expect(outputReservation('chat', { max_tokens: -1 }, r)).toBe(100)
    expect(outputReservation('embeddings', { max_tokens: 10 }, r)).toBe(0)
  })
})
