import { describe, expect, it } from 'vitest'
import { mentionsUsage, SseUsageScanner, usageFromTail, usageOfJson } from './respond.js'

const enc = new TextEncoder()

describe('SseUsageScanner', () => {
  it('finds usage in a data line split across chunks', () => {
    const s = new SseUsageScanner()
    const text = 'data: {"n":1}\n\ndata: {"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    for (let i = 0; i < text.length; i += 5) s.push(enc.encode(text.slice(i, i + 5)))
    expect(s.usage).toEqual({ promptTokens: 7, completionTokens: 3 })
    expect(s.lineBytes).toBe(0)
  })

  it('measures the open line in bytes across chunks (LF or CR ends it)', () => {
    const s = new SseUsageScanner()
    s.push(enc.encode('data: {"n":1}\n\ndata: '))
    expect(s.lineBytes).toBe(6)
    s.push(enc.encode('é'.repeat(10)))
    expect(s.lineBytes).toBe(26)
    s.push(enc.encode('x\r'))
    expect(s.lineBytes).toBe(0)
  })
})

describe('SseUsageScanner after the first token', () => {
  const tokenEvent = (t: string) => `data: {"choices":[{"delta":{"content":"${t}"}}]}\n\n`
  const usageEvent = 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}\n\n'

  it('still finds usage in whole-line chunks, split ones and after multibyte text', () => {
    const whole = new SseUsageScanner()
    for (const t of ['a', 'é', '€']) whole.push(enc.encode(tokenEvent(t)))
    expect(whole.firstTokenAt).toBeGreaterThan(0)
    whole.push(enc.encode(usageEvent))
    expect(whole.usage).toEqual({ promptTokens: 9, completionTokens: 4 })

    // A chunk ending inside a line (and inside a UTF-8 sequence), then the rest with the usage.
    const split = new SseUsageScanner()
    split.push(enc.encode(tokenEvent('x')))
    const bytes = enc.encode(`${tokenEvent('€€')}${usageEvent}`)
    const cut = bytes.indexOf(0xe2) + 1
    split.push(bytes.subarray(0, cut))
    expect(split.lineBytes).toBeGreaterThan(0)
    split.push(bytes.subarray(cut, cut + 40))
    split.push(bytes.subarray(cut + 40))
    expect(split.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
    expect(split.lineBytes).toBe(0)
  })

  it('reads the first token and the usage of a whole stream in one chunk, nulls passed over', () => {
    const nullUsage = (t: string) =>
      `data: {"choices":[{"delta":{"content":"${t}"}}],"usage":null}\n\n`
    const s = new SseUsageScanner()
    s.push(
      enc.encode(
        `data: {"choices":[{"delta":{"role":"assistant","content":""}}],"usage":null}\n\n${nullUsage('a')}${nullUsage('b')}${usageEvent}data: [DONE]\n\n`,
      ),
    )
    expect(s.firstTokenAt).toBeGreaterThan(0)
    expect(s.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
  })

  it('finds usage wherever the chunks are cut, the key split across two or three of them', () => {
    // Token events as engines send them when asked for usage: `"usage":null` in each.
    const nullUsage = (t: string) =>
      `data: {"choices":[{"delta":{"content":"${t}"}}],"usage":null}\n\n`
    const stream = enc.encode(
      `${nullUsage('a')}${tokenEvent('b€')}${nullUsage('c')}${usageEvent}data: [DONE]\n\n`,
    )
    const opening = enc.encode(tokenEvent('x')).byteLength
    // Every pair of cut points after the opening event (three pieces), so every split of the
    // key and of the lines around it is seen once.
    for (let i = opening + 1; i < stream.byteLength; i += 3) {
      for (let j = i + 1; j < Math.min(stream.byteLength, i + 12); j++) {
        const s = new SseUsageScanner()
        s.push(enc.encode(tokenEvent('x')))
        s.push(stream.subarray(0, i))
        s.push(stream.subarray(i, j))
        s.push(stream.subarray(j))
        expect(s.usage, `cut at ${i}/${j}`).toEqual({ promptTokens: 9, completionTokens: 4 })
        expect(s.lineBytes).toBe(0)
      }
    }
  })

  it('a whole stream in one chunk (an engine answering at once): first token, usage, open line', () => {
    const opening = 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    const all = `${opening}${tokenEvent('a')}${tokenEvent('é')}${usageEvent}data: [DONE]\n\n`
    const one = new SseUsageScanner()
    one.push(enc.encode(all))
    expect(one.firstTokenAt).toBeGreaterThan(0)
    expect(one.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
    expect(one.lineBytes).toBe(0)
    // The same, with the chunk ending inside a line, then the rest.
    const bytes = enc.encode(all)
    const cut = bytes.byteLength - 30
    const two = new SseUsageScanner()
    two.push(bytes.subarray(0, cut))
    expect(two.lineBytes).toBe(
      bytes.subarray(0, cut).byteLength - bytes.subarray(0, cut).lastIndexOf(10) - 1,
    )
    two.push(bytes.subarray(cut))
    expect(two.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
    expect(two.lineBytes).toBe(0)
    // No token at all (role-only opening, then usage): usage still found, no first token.
    const none = new SseUsageScanner()
    none.push(enc.encode(`${opening}${usageEvent}`))
    expect(none.firstTokenAt).toBeUndefined()
    expect(none.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
  })

  it('reads usage from CRLF lines, a Responses final event, and a line held over many chunks', () => {
    const crlf = new SseUsageScanner()
    crlf.push(enc.encode(tokenEvent('a').replace(/\n/g, '\r\n')))
    crlf.push(enc.encode(usageEvent.replace(/\n/g, '\r\n')))
    expect(crlf.firstTokenAt).toBeGreaterThan(0)
    expect(crlf.usage).toEqual({ promptTokens: 9, completionTokens: 4 })

    const responses = new SseUsageScanner()
    responses.push(
      enc.encode(
        'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n',
      ),
    )
    responses.push(
      enc.encode(
        'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r","usage":{"input_tokens":6,"output_tokens":2}}}\n\n',
      ),
    )
    expect(responses.usage).toEqual({ promptTokens: 6, completionTokens: 2 })

    // After the first token: the usage line arrives one byte at a time, its LF alone at the end.
    const slow = new SseUsageScanner()
    slow.push(enc.encode(tokenEvent('x')))
    const line = enc.encode(usageEvent.trimEnd())
    for (let i = 0; i < line.byteLength; i++) slow.push(line.subarray(i, i + 1))
    expect(slow.usage).toBeUndefined()
    expect(slow.lineBytes).toBe(line.byteLength)
    slow.push(enc.encode('\n\n'))
    expect(slow.usage).toEqual({ promptTokens: 9, completionTokens: 4 })
  })

  it('keeps the open line measured while it is not decoded', () => {
    const s = new SseUsageScanner()
    s.push(enc.encode(tokenEvent('x')))
    const open = 'data: {"choices":[{"delta":{"content":"'
    s.push(enc.encode(open))
    s.push(enc.encode('y'.repeat(100)))
    expect(s.lineBytes).toBe(open.length + 100)
    s.push(enc.encode('"}}]}\n\n'))
    expect(s.lineBytes).toBe(0)
    expect(s.usage).toBeUndefined()
  })
})

describe('mentionsUsage', () => {
  const b = (t: string) => Buffer.from(t)
  it('is false for the null usage engines send in every chunk but the last', () => {
    expect(mentionsUsage(b('data: {"choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'))).toBe(
      false,
    )
    expect(mentionsUsage(b('{"usage" :  null}{"usage":null}'))).toBe(false)
    expect(mentionsUsage(b('{"content":"the \\"usage\\" word"}'))).toBe(false)
  })
  it('is true for a usage object, and for a key whose value is past the chunk', () => {
    expect(mentionsUsage(b('{"usage":null}{"usage":{"prompt_tokens":1}}'))).toBe(true)
    expect(mentionsUsage(b('{"usage": {"prompt_tokens":1}}'))).toBe(true)
    expect(mentionsUsage(b('{"usage"'))).toBe(true)
    expect(mentionsUsage(b('{"usage": '))).toBe(true)
  })
})

describe('usageFromTail', () => {
  it('reads the token counts after the last "usage" key, nested details included', () => {
    const body = `{"id":"x","data":[${'0.1,'.repeat(100)}0.2],"usage":{"prompt_tokens":12,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens":5}}`
    expect(usageFromTail(body.slice(-200))).toEqual({ promptTokens: 12, completionTokens: 5 })
    expect(usageFromTail('{"usage":{"prompt_tokens":3,"total_tokens":3}}')).toEqual({
      promptTokens: 3,
      completionTokens: 0,
    })
    expect(usageFromTail('{"id":"no usage here"}')).toBeUndefined()
  })
})

describe('usageOfJson', () => {
  const b = (s: string) => Buffer.from(s)
  it('reads the usage object of a chat, embeddings and Responses answer', () => {
    const chat = JSON.stringify({
      id: 'x',
      choices: [{ message: { role: 'assistant', content: 'the "usage": {} word' } }],
      usage: {
        prompt_tokens: 17,
        completion_tokens: 16,
        prompt_tokens_details: { cached_tokens: 4 },
      },
    })
    expect(usageOfJson(b(chat))).toEqual({ promptTokens: 17, completionTokens: 16 })
    expect(
      usageOfJson(
        b('{"data":[{"embedding":[0.1,-2e-3]}],"usage" : {"prompt_tokens":9,"total_tokens":9}}'),
      ),
    ).toEqual({ promptTokens: 9, completionTokens: 0 })
    expect(usageOfJson(b('{"output":[],"usage":{"input_tokens":5,"output_tokens":2}}'))).toEqual({
      promptTokens: 5,
      completionTokens: 2,
    })
  })
  it('no usage where there is no usable usage object', () => {
    for (const s of [
      '{"usage":null}',
      '{"id":"no usage here"}',
      '{"content":"usage","x":1}',
      '{"usage":{"prompt_tokens":"many"}}',
      '{"usage":{"prompt_tokens":3',
      '{"usage":[1,2]}',
      '{"usage":{"prompt_tokens":3]}',
    ])
      expect(usageOfJson(b(s)), s).toBeUndefined()
  })
  it('a string value "usage" before the key is not taken for it', () => {
    expect(usageOfJson(b('{"usage":{"prompt_tokens":1},"note":"usage"}'))).toEqual({
      promptTokens: 1,
      completionTokens: 0,
    })
  })
  it('finds the key far from the end, and a key past string values "usage" at either side of the tail', () => {
    const far = `{"usage":{"prompt_tokens":2,"completion_tokens":3},"pad":"${'x'.repeat(2000)}"}`
    expect(usageOfJson(b(far))).toEqual({ promptTokens: 2, completionTokens: 3 })
    // A string "usage" in the last bytes, the key itself a few hundred bytes further back (the
    // search goes on past the byte loop's stretch into the native one).
    const straddle = `{"usage":{"prompt_tokens":4},"pad":"${'y'.repeat(490)}","note":"usage"}`
    expect(usageOfJson(b(straddle))).toEqual({ promptTokens: 4, completionTokens: 0 })
    expect(usageOfJson(b(`{"pad":"${'z'.repeat(3000)}"}`))).toBeUndefined()
  })
})
