// The router's TTFT is the first generated token, not the first byte: the scanner marks the first
// data line that carries output, and ignores openings without any (vLLM's role-only delta).
import { describe, expect, it } from 'vitest'
import { SseUsageScanner } from './respond.js'

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)

function firstTokenLine(lines: readonly string[]): number {
  const s = new SseUsageScanner()
  for (let i = 0; i < lines.length; i++) {
    s.push(enc(`${lines[i]}\n\n`))
    if (s.firstTokenAt !== undefined) return i
  }
  return -1
}

describe('first generated token', () => {
  it('skips the role-only opening delta and finds the first content', () => {
    expect(
      firstTokenLine([
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',
        'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}',
      ]),
    ).toBe(1)
  })
  it('counts text completions, reasoning, tool calls and Responses deltas', () => {
    expect(firstTokenLine(['data: {"choices":[{"text":"a","index":0}]}'])).toBe(0)
    expect(firstTokenLine(['data: {"choices":[{"delta":{"reasoning_content":"hm"}}]}'])).toBe(0)
    expect(
      firstTokenLine(['data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}']),
    ).toBe(0)
    expect(
      firstTokenLine([
        'event: response.output_text.delta',
        'data: {"type":"response.output_text.delta","delta":"Hi"}',
      ]),
    ).toBe(1)
  })
  it('sees no token in events without output (nulls, empty strings, usage, [DONE])', () => {
    expect(
      firstTokenLine([
        'data: {"choices":[{"delta":{"content":null}}]}',
        'data: {"choices":[{"delta":{"tool_calls":[]}}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":1}}',
        'data: [DONE]',
      ]),
    ).toBe(-1)
  })
})
