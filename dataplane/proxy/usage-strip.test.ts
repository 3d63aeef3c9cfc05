import { describe, expect, it } from 'vitest'
import { requestUsage, UsageChunkStripper, wantsInjectedUsage } from './usage-strip.js'

const enc = (s: string): Buffer => Buffer.from(s)
const chunk = (content: string): string =>
  `data: {"id":"x","choices":[{"index":0,"delta":{"content":"${content}"}}]}\n\n`
const USAGE =
  'data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'

function run(parts: string[]): { text: string; dropped: number; same: boolean[] } {
  const f = new UsageChunkStripper()
  let text = ''
  const same: boolean[] = []
  for (const p of parts) {
    const c = enc(p)
    const r = f.transform(c)
    same.push(r.out === c)
    if (r.out !== undefined) text += Buffer.from(r.out).toString()
  }
  const rest = f.flush()
  if (rest !== undefined) text += Buffer.from(rest).toString()
  return { text, dropped: f.dropped, same }
}

describe('UsageChunkStripper', () => {
  it('passes whole-event chunks through untouched and drops the usage-only event', () => {
    const r = run([chunk('a'), chunk('b'), USAGE, 'data: [DONE]\n\n'])
    expect(r.text).toBe(`${chunk('a') + chunk('b')}data: [DONE]\n\n`)
    expect(r.dropped).toBe(1)
    // The common chunks are the very same buffers (no copy).
    expect(r.same).toEqual([true, true, false, true])
  })

  it('finds a usage event split across chunks, and keeps everything else byte for byte', () => {
    const whole = `${chunk('a') + USAGE}data: [DONE]\n\n`
    const cut = [
      whole.slice(0, 30),
      whole.slice(30, chunk('a').length + 20),
      whole.slice(chunk('a').length + 20),
    ]
    const r = run(cut)
    expect(r.text).toBe(`${chunk('a')}data: [DONE]\n\n`)
    expect(r.dropped).toBe(1)
  })

  it('keeps a content chunk whose choices are not empty even if it has usage', () => {
    const withUsage =
      'data: {"choices":[{"delta":{"content":"z"}}],"usage":{"prompt_tokens":1}}\n\n'
    const spacedEmpty =
      'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}\n\n'
    const r = run([withUsage, spacedEmpty, 'data: {"choices":[],"usage":null}\n\n'])
    expect(r.text).toBe(`${withUsage}data: {"choices":[],"usage":null}\n\n`)
    expect(r.dropped).toBe(1)
  })

  it('cuts the usage-only event out of a whole stream that arrives in one chunk', () => {
    const keep = 'data: {"choices":[],"usage":null}\n\n'
    const whole = `${chunk('a')}${keep}${chunk('b')}${USAGE}${chunk('c')}data: [DONE]\n\n`
    const r = run([whole, `${chunk('d')}${USAGE}data: {"cho`, 'ices":[]}\n\n'])
    expect(r.text).toBe(
      `${chunk('a')}${keep}${chunk('b')}${chunk('c')}data: [DONE]\n\n${chunk('d')}data: {"choices":[]}\n\n`,
    )
    expect(r.dropped).toBe(2)
  })

  it('looks past other empty arrays to the choices key', () => {
    const toolCalls =
      'data: {"choices":[{"delta":{"tool_calls":[]}}],"usage":{"prompt_tokens":1}}\n\n'
    const r = run([toolCalls, `data: {"x":[],"choices":[],"usage":{"prompt_tokens":1}}\n\n`])
    expect(r.text).toBe(toolCalls)
    expect(r.dropped).toBe(1)
    expect(r.same[0]).toBe(true)
  })

  it('passes CRLF streams through unchanged rather than holding events it cannot delimit', () => {
    const crlf = 'data: {"choices":[]}\r\n\r\n'
    const r = run(['data: {"cho', crlf, chunk('q')])
    expect(r.text).toBe(`data: {"cho${crlf}${chunk('q')}`)
  })
})

describe('requestUsage', () => {
  it('splices the flag in front of the client bytes when there is no stream_options', () => {
    const raw = enc('{"model":"m","stream":true}')
    const out = requestUsage(raw, { model: 'm', stream: true })
    expect(JSON.parse(Buffer.from(out).toString())).toEqual({
      model: 'm',
      stream: true,
      stream_options: { include_usage: true },
    })
  })
  it('re-serialises when the client sent stream_options (its other options kept)', () => {
    const body = { model: 'm', stream: true, stream_options: { continuous_usage_stats: false } }
    const out = requestUsage(enc(JSON.stringify(body)), body)
    expect(JSON.parse(Buffer.from(out).toString()).stream_options).toEqual({
      continuous_usage_stats: false,
      include_usage: true,
    })
  })
  it('is wanted only for streams that did not ask', () => {
    expect(wantsInjectedUsage({ stream: true })).toBe(true)
    expect(wantsInjectedUsage({ stream: true, stream_options: { include_usage: true } })).toBe(
      false,
    )
    expect(wantsInjectedUsage({ stream: false })).toBe(false)
    expect(wantsInjectedUsage({ stream: true, stream_options: { include_usage: false } })).toBe(
      true,
    )
  })
  it('leaves a malformed stream_options to the engine (never turns it valid)', () => {
    for (const so of [5, 'x', null, [], { include_usage: 'yes' }]) {
      expect(wantsInjectedUsage({ stream: true, stream_options: so }), JSON.stringify(so)).toBe(
        false,
      )
    }
  })
})
