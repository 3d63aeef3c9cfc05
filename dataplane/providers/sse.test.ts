import { describe, expect, it } from 'vitest'
import { SSE_DONE, SseLineTooLongError, SseParser, sseData, sseError } from './sse.js'

const enc = new TextEncoder()

describe('SseParser', () => {
  it('reads named events, multi-line data and comments', () => {
    const p = new SseParser()
    const evs = p.push(
      enc.encode(
        ': keep-alive\nevent: message_start\ndata: {"a":1}\n\nevent: ping\ndata: {}\n\ndata: x\ndata: y\n\n',
      ),
    )
    expect(evs).toEqual([
      { event: 'message_start', data: '{"a":1}' },
      { event: 'ping', data: '{}' },
      { data: 'x\ny' },
    ])
  })

  it('handles CRLF (Gemini) and CR line ends, split anywhere, and split UTF-8', () => {
    const text = 'data: {"t":"héllo"}\r\n\r\ndata: two\r\r'
    const bytes = enc.encode(text)
    for (let cut = 1; cut < bytes.length; cut++) {
      const p = new SseParser()
      const evs = [...p.push(bytes.subarray(0, cut)), ...p.push(bytes.subarray(cut)), ...p.end()]
      expect(evs).toEqual([{ data: '{"t":"héllo"}' }, { data: 'two' }])
    }
  })

  it('joins a line sent in many chunks, and keeps a CR pending across an empty chunk', () => {
    const p = new SseParser()
    const out = []
    for (const piece of ['da', 'ta: ', 'x'.repeat(1000), 'yz', '\r', '', '\n', '\n']) {
      out.push(...p.push(enc.encode(piece)))
    }
    expect(out).toEqual([{ data: `${'x'.repeat(1000)}yz` }])
  })

  it('refuses a line longer than its cap (an endless line is not held in memory)', () => {
    const p = new SseParser({ maxLine: 1000 })
    expect(p.push(enc.encode(`data: ${'a'.repeat(500)}`))).toEqual([])
    expect(() => p.push(enc.encode('a'.repeat(600)))).toThrow(SseLineTooLongError)
    // Lines under the cap pass, however many there are.
    const q = new SseParser({ maxLine: 1000 })
    const many = `data: ${'b'.repeat(900)}\n\n`.repeat(20)
    expect(q.push(enc.encode(many))).toHaveLength(20)
  })

  it('drops an event whose blank line never came', () => {
    const p = new SseParser()
    expect(p.push(enc.encode('data: partial\n'))).toEqual([])
    expect(p.end()).toEqual([])
  })

  it('encodes OpenAI frames and error events', () => {
    expect(sseData('{}')).toBe('data: {}\n\n')
    expect(SSE_DONE).toBe('data: [DONE]\n\n')
    expect(JSON.parse(sseError('m', 'c').slice(6))).toEqual({
      error: { message: 'm', type: 'server_error', code: 'c', param: null },
    })
  })
})
