// Client-side helpers for tests that talk to simulators over real HTTP: JSON posts, an SSE reader
// that timestamps events, and a small Prometheus text parser. Exported so gateway tests can reuse them.

import { performance } from 'node:perf_hooks'

export async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; json: unknown; ms: number }> {
  const t0 = performance.now()
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.text()
  return {
    status: res.status,
    json: text === '' ? null : (JSON.parse(text) as unknown),
    ms: performance.now() - t0,
  }
}

export interface SseResult {
  status: number
  /** Parsed `data:` payloads except the terminal [DONE]. */
  events: unknown[]
  done: boolean
  /** ms from request start to the first event carrying generated text (null if none). */
  ttftMs: number | null
  /** ms from request start to the last event carrying generated text (null if none). */
  lastTextMs: number | null
  totalMs: number
  /** true when the body ended with a network error (e.g. the server destroyed the socket). */
  broken: boolean
}

function hasText(ev: unknown): boolean {
  if (typeof ev !== 'object' || ev === null) return false
  const choices = (ev as { choices?: unknown }).choices
  if (!Array.isArray(choices) || choices.length === 0) return false
  const c = choices[0] as { delta?: { content?: unknown }; text?: unknown }
  const t = c.delta?.content ?? c.text
  return typeof t === 'string' && t !== ''
}

export async function postSse(url: string, body: unknown): Promise<SseResult> {
  const t0 = performance.now()
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const events: unknown[] = []
  let done = false
  let ttftMs: number | null = null
  let lastTextMs: number | null = null
  let broken = false
  let buf = ''
  const decoder = new TextDecoder()
  const reader = res.body?.getReader()
  try {
    for (;;) {
      if (reader === undefined) break
      const { value, done: end } = await reader.read()
      if (end) break
      buf += decoder.decode(value, { stream: true })
      let idx = buf.indexOf('\n\n')
      while (idx >= 0) {
        const frame = buf.slice(0, idx)
        buf = buf.slice(idx + 2)
        idx = buf.indexOf('\n\n')
        if (!frame.startsWith('data: ')) continue
        const data = frame.slice(6)
        if (data === '[DONE]') {
          done = true
          continue
        }
        const ev = JSON.parse(data) as unknown
        if (hasText(ev)) {
          lastTextMs = performance.now() - t0
          ttftMs ??= lastTextMs
        }
        events.push(ev)
      }
    }
  } catch {
    broken = true
  }
  return {
    status: res.status,
    events,
    done,
    ttftMs,
    lastTextMs,
    totalMs: performance.now() - t0,
    broken,
  }
}

export interface PromSample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Enough of the text exposition format for tests: skips comments, parses labels and numbers. */
export function parseProm(text: string): PromSample[] {
  const out: PromSample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line)
    if (m === null) throw new Error(`bad exposition line: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[3] ?? ''
    for (const lm of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[lm[1] ?? ''] = lm[2] ?? ''
    const raw = m[4] ?? ''
    out.push({
      name: m[1] ?? '',
      labels,
      value: raw === '+Inf' ? Number.POSITIVE_INFINITY : Number(raw),
    })
  }
  return out
}

/** The value of the single sample `name` whose labels include `match`; throws if absent. */
export function promValue(
  samples: readonly PromSample[],
  name: string,
  match: Record<string, string> = {},
): number {
  const s = samples.find(
    (x) => x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v),
  )
  if (s === undefined) throw new Error(`no sample ${name} ${JSON.stringify(match)}`)
  return s.value
}

/**
 * Sum of the samples `name` whose labels include `match`; 0 when there is none (a labelled
 * counter has no sample before its first increment).
 */
export function promSum(
  samples: readonly PromSample[],
  name: string,
  match: Record<string, string> = {},
): number {
  let sum = 0
  for (const x of samples)
    if (x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v))
      sum += x.value
  return sum
}

/** The samples of a `/metrics` endpoint (`url` is the whole address). */
export async function scrapeProm(url: string): Promise<PromSample[]> {
  const res = await fetch(url)
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`)
  return parseProm(await res.text())
}
