// Open-loop load for the routing benchmark: every request has a planned send time (Poisson or
// bursty arrivals, drawn from a seeded generator so every policy sees the same sequence) and goes
// out at that time whether or not earlier ones finished, as real users would. Streams are read
// chunk by chunk: time to the first body chunk is TTFT (the simulator sends nothing before the
// first token), the spacing of the rest gives TPOT.
import { Pool } from 'undici'

export interface PlannedRequest {
  /** ms after the start of the run. */
  readonly at: number
  readonly body: string
  readonly headers?: Readonly<Record<string, string>>
  /** Grouping for per-class statistics (tenant, workload phase, …). */
  readonly tag: string
  /** Output tokens the request asks for (the simulator always generates all of them). */
  readonly outputTokens: number
}

export interface RequestResult {
  readonly tag: string
  readonly at: number
  readonly status: number
  readonly ttftMs: number
  readonly e2eMs: number
  readonly tpotMs: number
  /** The simulator pod that answered (`x-inference-pod`). */
  readonly pod: string
  readonly error?: string
}

/** Exponential inter-arrival times at `rate` per second for `durationMs`. */
export function poissonTimes(rate: number, durationMs: number, random: () => number): number[] {
  const out: number[] = []
  let t = 0
  for (;;) {
    t += (-Math.log(1 - random()) / rate) * 1000
    if (t >= durationMs) return out
    out.push(t)
  }
}

/**
 * Poisson arrivals whose rate alternates between `high` and `low` every `periodMs / 2`
 * (thinning of a Poisson process at the peak rate).
 */
export function burstyTimes(
  high: number,
  low: number,
  periodMs: number,
  durationMs: number,
  random: () => number,
): number[] {
  const out: number[] = []
  for (const t of poissonTimes(high, durationMs, random)) {
    const on = t % periodMs < periodMs / 2
    if (on || random() < low / high) out.push(t)
  }
  return out
}

export async function runOpenLoop(
  origin: string,
  plan: readonly PlannedRequest[],
  opts: { timeoutMs?: number } = {},
): Promise<RequestResult[]> {
  const pool = new Pool(origin, { connections: 1024, pipelining: 1, keepAliveTimeout: 30_000 })
  const timeoutMs = opts.timeoutMs ?? 120_000
  const start = performance.now()
  const results: RequestResult[] = []
  const pending: Promise<void>[] = []
  const one = async (p: PlannedRequest): Promise<void> => {
    const t0 = performance.now()
    let first = Number.NaN
    let last = Number.NaN
    let status = 0
    let pod = '?'
    let error: string | undefined
    try {
      const res = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json', ...p.headers },
        body: p.body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      status = res.statusCode
      const h = res.headers['x-inference-pod']
      pod = typeof h === 'string' ? h : '?'
      // A stream is whole only if it ends with `data: [DONE]` and carried no error event: a
      // gateway whose engine died mid-stream may end the HTTP response cleanly after an error
      // event (or just end it), which must count as a failed request, not a short success.
      let tail = ''
      let errorEvent = false
      for await (const chunk of res.body) {
        const now = performance.now()
        if (Number.isNaN(first)) first = now
        last = now
        const text = (chunk as Buffer).toString('latin1')
        if (!errorEvent && text.includes('"error":')) errorEvent = true
        tail = (tail + text).slice(-64)
      }
      if (status === 200 && p.body.includes('"stream":true')) {
        if (errorEvent) error = 'error event in the stream'
        else if (!tail.includes('[DONE]')) error = 'stream ended without [DONE]'
      }
    } catch (e) {
      error = e instanceof Error ? e.message : String(e)
    }
    const end = performance.now()
    results.push({
      tag: p.tag,
      at: p.at,
      status,
      ttftMs: first - t0,
      e2eMs: end - t0,
      tpotMs: p.outputTokens > 1 ? (last - first) / (p.outputTokens - 1) : 0,
      pod,
      ...(error !== undefined ? { error } : {}),
    })
  }
  for (const p of plan) {
    const wait = p.at - (performance.now() - start)
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    pending.push(one(p))
  }
  await Promise.all(pending)
  await pool.close()
  return results
}
