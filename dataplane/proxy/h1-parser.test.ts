// The raw upstream client's parser against responses split at every byte boundary (a parser that
// only works on whole chunks passes loopback benchmarks and fails on a real network), and the
// framing rules a proxy depends on.
import { describe, expect, it } from 'vitest'
import { H1ProtocolError, H1ResponseParser, H1SocketError, type ResponseSink } from './h1-parser.js'

type Event = ['head', number, string[]] | ['body', string] | ['end', boolean]

/** A sink that records events, body chunks merged (their split is the input's, not a result). */
function recorder(): { sink: ResponseSink; events: Event[] } {
  const events: Event[] = []
  return {
    events,
    sink: {
      onHead: (status, raw) => events.push(['head', status, raw]),
      onBody: (chunk) => {
        const last = events[events.length - 1]
        if (last?.[0] === 'body') last[1] += chunk.toString('latin1')
        else events.push(['body', chunk.toString('latin1')])
      },
      onEnd: (reusable) => events.push(['end', reusable]),
    },
  }
}

/** Feeds `parts` to a fresh parser expecting `method`; returns its events. */
function parse(parts: readonly string[], method = 'POST', finish = false): Event[] {
  const { sink, events } = recorder()
  const p = new H1ResponseParser(sink)
  p.expect(method)
  for (const part of parts) p.execute(Buffer.from(part, 'latin1'))
  if (finish) p.finish()
  return events
}

/** Every split of `text` into two pieces and into single bytes gives `expected`. */
function everySplit(text: string, expected: Event[], method = 'POST'): void {
  for (let k = 0; k <= text.length; k++)
    expect(parse([text.slice(0, k), text.slice(k)], method), `split at ${k}`).toEqual(expected)
  expect(parse([...text], method), 'byte by byte').toEqual(expected)
}

/**
 * Feeds `parts`; per part, the `last` flags of its body pieces and whether the end came in it.
 */
function lastFlags(parts: readonly string[]): { last: boolean[]; ended: boolean }[] {
  let cur = { last: [] as boolean[], ended: false }
  const p = new H1ResponseParser({
    onHead: () => {},
    onBody: (_chunk, last) => cur.last.push(last),
    onEnd: () => {
      cur.ended = true
    },
  })
  p.expect('POST')
  return parts.map((part) => {
    cur = { last: [], ended: false }
    p.execute(Buffer.from(part, 'latin1'))
    return cur
  })
}

describe('H1ResponseParser', () => {
  it("marks a body's last bytes when its end is in the same read, never otherwise", () => {
    const chunked =
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x\r\n world\r\n0\r\n\r\n'
    const trailers = `${chunked.slice(0, -2)}x-t: 1\r\n\r\n`
    const length = 'HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world'
    // Whole: the last piece is marked, the one before not.
    expect(lastFlags([chunked])).toEqual([{ last: [false, true], ended: true }])
    expect(lastFlags([length])).toEqual([{ last: [true], ended: true }])
    // The zero-size chunk in a read of its own: nothing said before it came.
    const cut = chunked.indexOf('0\r\n\r\n')
    expect(lastFlags([chunked.slice(0, cut), chunked.slice(cut)])).toEqual([
      { last: [false, false], ended: false },
      { last: [], ended: true },
    ])
    // Trailers after the zero-size chunk: not looked for, nothing said.
    expect(lastFlags([trailers])).toEqual([{ last: [false, false], ended: true }])
    // At every split: a piece marked last is always followed by the end in the same read.
    for (const text of [chunked, length, trailers])
      for (let k = 0; k <= text.length; k++)
        for (const r of lastFlags([text.slice(0, k), text.slice(k)]))
          if (r.last.includes(true)) expect(r.ended, `split at ${k}`).toBe(true)
  })

  it('reads a content-length body at every split', () => {
    everySplit(
      'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
      [
        ['head', 200, ['Content-Type', 'application/json', 'Content-Length', '11']],
        ['body', '{"ok":true}'],
        ['end', true],
      ],
    )
  })

  it('reads a chunked body with extensions and trailers at every split', () => {
    everySplit(
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n' +
        '5;name=value\r\nhello\r\n' +
        'A ; x\r\n, world!\r\n\r\n' +
        '0\r\nx-trailer: 1\r\nx-other: two\r\n\r\n',
      [
        ['head', 200, ['transfer-encoding', 'chunked']],
        ['body', 'hello, world!\r\n'],
        ['end', true],
      ],
    )
  })

  it('passes chunk data through as is (SSE events spanning chunks)', () => {
    const events = parse([
      'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n',
      '6\r\ndata: \r\n',
      '3\r\n{}\n\r\n1\r\n\n\r\n',
      '0\r\n\r\n',
    ])
    expect(events).toEqual([
      ['head', 200, ['Content-Type', 'text/event-stream', 'Transfer-Encoding', 'chunked']],
      ['body', 'data: {}\n\n'],
      ['end', true],
    ])
  })

  it('says a Connection: close response ends the connection', () => {
    expect(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'])).toEqual([
      ['head', 200, ['Connection', 'close', 'Content-Length', '2']],
      ['body', 'ok'],
      ['end', false],
    ])
  })

  it('keeps an HTTP/1.0 connection only with keep-alive', () => {
    expect(parse(['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n']).at(-1)).toEqual(['end', false])
    expect(
      parse(['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n']).at(-1),
    ).toEqual(['end', true])
  })

  it('reads a body delimited by the connection end', () => {
    expect(parse(['HTTP/1.1 200 OK\r\n\r\nsome', ' bytes'], 'POST', true)).toEqual([
      ['head', 200, []],
      ['body', 'some bytes'],
      ['end', false],
    ])
  })

  it('skips 1xx answers before the final one, at every split', () => {
    everySplit(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' +
        'HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx',
      [
        ['head', 201, ['Content-Length', '1']],
        ['body', 'x'],
        ['end', true],
      ],
    )
  })

  it('reads no body for HEAD, 204 and 304, and the next response after them', () => {
    const { sink, events } = recorder()
    const p = new H1ResponseParser(sink)
    p.expect('HEAD')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'))
    p.expect('POST')
    p.execute(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'))
    p.expect('GET')
    p.execute(Buffer.from('HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n'))
    p.expect('GET')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'))
    expect(events).toEqual([
      ['head', 200, ['Content-Length', '99']],
      ['end', true],
      ['head', 204, []],
      ['end', true],
      ['head', 304, ['Content-Length', '5']],
      ['end', true],
      ['head', 200, ['Content-Length', '3']],
      ['body', 'abc'],
      ['end', true],
    ])
  })

  it('refuses a head larger than its limit, split or whole, with a typed error', () => {
    const big = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`
    for (const parts of [[big], [big.slice(0, 9000), big.slice(9000)]]) {
      const p = new H1ResponseParser(recorder().sink)
      p.expect('POST')
      let err: unknown
      try {
        for (const part of parts) p.execute(Buffer.from(part))
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(H1ProtocolError)
      expect((err as H1ProtocolError).code).toBe('HPE_HEADER_OVERFLOW')
    }
  })

  it('refuses oversized trailers', () => {
    const trailer = `0\r\nx-t: ${'b'.repeat(20_000)}\r\n\r\n`
    expect(() => parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', trailer])).toThrow(
      expect.objectContaining({ code: 'HPE_HEADER_OVERFLOW' }),
    )
  })

  it.each([
    ['a bad status line', 'HTTP/2 200 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a missing status code', 'HTTP/1.1 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['101 nobody asked for', 'HTTP/1.1 101 Switching\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a header without a colon', 'HTTP/1.1 200 OK\r\nbroken\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['obs-fold', 'HTTP/1.1 200 OK\r\na: b\r\n c\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a space in a name', 'HTTP/1.1 200 OK\r\nx y: 1\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a bare LF in a value', 'HTTP/1.1 200 OK\r\na: b\nc: d\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    [
      'a signed content-length',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HPE_INVALID_CONTENT_LENGTH',
    ],
    [
      'conflicting content-lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
    ],
    [
      'content-length with chunked',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
    ],
    [
      'a chunk size that is not hex',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HPE_INVALID_CHUNK_SIZE',
    ],
    [
      'a chunk size past 2^48',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n',
      'HPE_INVALID_CHUNK_SIZE',
    ],
    [
      'chunk data longer than its size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n',
      'HPE_STRICT',
    ],
  ])('refuses %s', (_what, text, code) => {
    expect(() => parse([text])).toThrow(expect.objectContaining({ code }))
  })

  it.each([
    ['a reason with a bare CR', 'HTTP/1.1 200 O\rK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a status code of four digits', 'HTTP/1.1 2000 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['no space after the code', 'HTTP/1.1 200OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['HTTP/1.2', 'HTTP/1.2 200 OK\r\n\r\n', 'HPE_INVALID_STATUS'],
    ['a field starting with a colon', 'HTTP/1.1 200 OK\r\n: v\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    [
      'a latin1 letter in a name',
      'HTTP/1.1 200 OK\r\nx\u00e9: 1\r\n\r\n',
      'HPE_INVALID_HEADER_TOKEN',
    ],
    ['a NUL in a value', 'HTTP/1.1 200 OK\r\na: b\u0000c\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
  ])('refuses %s (status line and field checks)', (_what, text, code) => {
    expect(() => parse([text])).toThrow(expect.objectContaining({ code }))
  })

  it('reads a status line without a reason, and trims values as String.trim does', () => {
    expect(
      parse(['HTTP/1.0 204\r\nA: \t v w \u00a0\r\nB:\r\nC:x\r\nConnection: keep-alive\r\n\r\n']),
    ).toEqual([
      ['head', 204, ['A', 'v w', 'B', '', 'C', 'x', 'Connection', 'keep-alive']],
      ['end', true],
    ])
  })

  it('refuses bytes the engine sends with no request outstanding', () => {
    expect(() => parse(['HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy'])).toThrow(
      expect.objectContaining({ code: 'HPE_INVALID_CONSTANT' }),
    )
  })

  it('reports a connection that ends mid-body or before the head as a reset', () => {
    for (const parts of [
      ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab'],
      ['HTTP/1.1 200 OK\r\nContent-'],
      [],
    ]) {
      let err: unknown
      try {
        parse(parts, 'POST', true)
      } catch (e) {
        err = e
      }
      expect(err, JSON.stringify(parts)).toBeInstanceOf(H1SocketError)
      expect((err as H1SocketError).code).toBe('ECONNRESET')
    }
  })

  it('stops reading once the sink kills it mid-body', () => {
    const events: string[] = []
    const p: H1ResponseParser = new H1ResponseParser({
      onHead: () => events.push('head'),
      onBody: () => {
        events.push('body')
        p.kill()
      },
      onEnd: () => events.push('end'),
    })
    p.expect('POST')
    p.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc'))
    expect(events).toEqual(['head', 'body'])
    expect(p.busy).toBe(false)
  })
})
