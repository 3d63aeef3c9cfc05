// A small load generator for loopback benchmarks: open-loop fixed rate (latency under a steady
// arrival rate, unaffected by how slow the server is) and closed-loop max throughput. Times are
// taken with performance.now() around undici requests, so sub-millisecond differences are visible
// (autocannon rounds to whole milliseconds).
import { Pool } from 'undici'

export interface LoadTarget {
  readonly origin: string
  readonly path: string
  readonly body: string
  readonly headers?: Record<string, string>
  /**
   * Also record the time to the first response body byte (for streams: the first SSE event, not
   * the headers). Latencies always run until the whole body is read.
   */
  readonly firstByte?: boolean
}

export interface LoadResult {
  readonly sent: number
  readonly ok: number
  readonly errors: number
  readonly elapsedMs: number
  /** Sorted ascending, ms. */
  readonly latencies: readonly number[]
  /** Sorted ascending, ms, successful responses only; present when the target asked `firstByte`. */
  readonly firstByte?: readonly number[]
}

interface One {
  ok: boolean
  ms: number
  /** Time to the first body byte, ms; -1 when not measured or no body arrived. */
  firstMs: number
}

async function one(pool: Pool, t: LoadTarget): Promise<One> {
  const start = performance.now()
  try {
    const res = await pool.request({
      path: t.path,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...t.headers },
      body: t.body,
    })
    let firstMs = -1
    if (t.firstByte === true) {
      for await (const _chunk of res.body) {
        if (firstMs < 0) firstMs = performance.now() - start
      }
    } else {
      await res.body.dump({ limit: Number.MAX_SAFE_INTEGER })
    }
    return { ok: res.statusCode === 200, ms: performance.now() - start, firstMs }
  } catch {
    return { ok: false, ms: performance.now() - start, firstMs: -1 }
  }
}

function record(r: One, latencies: number[], firstByte: number[]): void {
  latencies.push(r.ms)
  if (r.ok && r.firstMs >= 0) firstByte.push(r.firstMs)
}

function result(
  t: LoadTarget,
  counts: { sent: number; ok: number; errors: number; elapsedMs: number },
  latencies: number[],
  firstByte: number[],
): LoadResult {
  const base = { ...counts, latencies: latencies.sort((a, b) => a - b) }
  return t.firstByte === true ? { ...base, firstByte: firstByte.sort((a, b) => a - b) } : base
}

export async function fixedRate(
  t: LoadTarget,
  rate: number,
  durationMs: number,
): Promise<LoadResult> {
  const pool = new Pool(t.origin, { connections: 256, pipelining: 1 })
  const latencies: number[] = []
  const firstByte: number[] = []
  let ok = 0
  let errors = 0
  let sent = 0
  const inflight = new Set<Promise<void>>()
  const start = performance.now()
  const total = Math.floor((rate * durationMs) / 1000)
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1)
    while (sent < due) {
      sent++
      const p: Promise<void> = one(pool, t).then((r) => {
        record(r, latencies, firstByte)
        if (r.ok) ok++
        else errors++
        inflight.delete(p)
      })
      inflight.add(p)
    }
    await new Promise((r) => setTimeout(r, 1))
  }
  await Promise.all(inflight)
  const elapsedMs = performance.now() - start
  await pool.close()
  return result(t, { sent, ok, errors, elapsedMs }, latencies, firstByte)
}

export async function closedLoop(
  t: LoadTarget,
  concurrency: number,
  durationMs: number,
): Promise<LoadResult> {
  const pool = new Pool(t.origin, { connections: concurrency, pipelining: 1 })
  const latencies: number[] = []
  const firstByte: number[] = []
  let ok = 0
  let errors = 0
  const start = performance.now()
  const deadline = start + durationMs
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const r = await one(pool, t)
        record(r, latencies, firstByte)
        if (r.ok) ok++
        else errors++
      }
    }),
  )
  const elapsedMs = performance.now() - start
  await pool.close()
  return result(t, { sent: ok + errors, ok, errors, elapsedMs }, latencies, firstByte)
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] ?? Number.NaN
}
