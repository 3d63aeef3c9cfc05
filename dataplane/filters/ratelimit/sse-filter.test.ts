import { describe, expect, it } from 'vitest'
import { SseLimitFilter, type StreamBudget } from './sse-filter.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`
const tok = (t: string) => ev({ choices: [{ index: 0, delta: { content: t } }] })
const usage = ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } })

async function run(
  filter: SseLimitFilter,
  parts: string[],
): Promise<{ text: string; end?: string }> {
  let text = ''
  for (const p of parts) {
    const r = await filter.transform(enc.encode(p))
    if (r.out) text += dec.decode(r.out)
    if (r.end) return { text, end: r.end }
  }
  const rest = filter.flush()
  if (rest) text += dec.decode(rest)
  return { text }
}

describe('SseLimitFilter', () => {
  it('passes events through whole, even when split across chunks, and counts tokens', async () => {
    const f = new SseLimitFilter({ stripUsageChunk: false, extendBy: 16 })
    const all =
      tok('a') +
      tok('b') +
      ev({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }) +
      usage +
      'data: [DONE]\n\n'
    const parts = [all.slice(0, 7), all.slice(7, 60), all.slice(60)]
    const { text } = await run(f, parts)
    expect(text).toBe(all)
    expect(f.streamed).toBe(2)
  })

  it('removes the usage-only chunk the client did not ask for; normalises CRLF', async () => {
    const f = new SseLimitFilter({ stripUsageChunk: true, extendBy: 16 })
    const { text } = await run(f, [tok('a').replace(/\n/g, '\r\n'), usage, 'data: [DONE]\n\n'])
    expect(text).toBe(`${tok('a')}data: [DONE]\n\n`)
  })

  it('reserves more as the stream grows and cuts it with an error event when refused', async () => {
    const grants = [true, false]
    const budget: StreamBudget & { reservedOutput: number } = {
      reservedOutput: 2,
      async extend(n) {
        const ok = grants.shift() ?? false
        if (ok) budget.reservedOutput += n
        return ok
      },
    }
    const f = new SseLimitFilter({ stripUsageChunk: false, extendBy: 2, budget })
    const { text, end } = await run(f, [
      tok('1') + tok('2') + tok('3'),
      tok('4') + tok('5') + tok('6'),
    ])
    expect(end).toBe('rate_limited')
    expect(text.startsWith(tok('1') + tok('2') + tok('3') + tok('4'))).toBe(true)
    expect(text).not.toContain('"5"')
    expect(text).toMatch(
      /data: \{"error":\{"message":".*output token rate limit","type":"rate_limit_error","code":"rate_limit_exceeded"/,
    )
    expect(f.cut).toBe(true)
  })
})
