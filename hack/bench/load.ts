// A small load generator for loopback benchmarks: open-loop fixed rate (latency under a steady
// arrival rate, unaffected by how slow the server is) and closed-loop max throughput. Times are
// taken with performance.now() around undici requests, so sub-millisecond differences are visible
// (autocannon rounds to whole milliseconds).
import { Pool } from 'undici'

export interface LoadTarget {
  readonly origin: string
  readonly path: string
  readonly body: string
  /** Read the whole response body (streams included) before stopping the clock. */
  readonly headers?: Record<string, string>
}

export interface LoadResult {
  readonly sent: number
  readonly ok: number
  readonly errors: number
  readonly elapsedMs: number
  /** Sorted ascending, ms. */
  readonly latencies: readonly number[]
}

async function one(pool: Pool, t: LoadTarget): Promise<{ ok: boolean; ms: number }> {
  const start = performance.now()
  try {
    const res = await pool.request({
      path: t.path,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...t.headers },
      body: t.body,
    })
    await res.body.dump({ limit: Number.MAX_SAFE_INTEGER })
    return { ok: res.statusCode === 200, ms: performance.now() - start }
  } catch {
    return { ok: false, ms: performance.now() - start }
  }
}

export async function fixedRate(
  t: LoadTarget,
  rate: number,
  durationMs: number,
): Promise<LoadResult> {
  const pool = new Pool(t.origin, { connections: 256, pipelining: 1 })
  const latencies: number[] = []
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
        latencies.push(r.ms)
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
  return { sent, ok, errors, elapsedMs, latencies: latencies.sort((a, b) => a - b) }
}

export async function closedLoop(
  t: LoadTarget,
  concurrency: number,
  durationMs: number,
): Promise<LoadResult> {
  const pool = new Pool(t.origin, { connections: concurrency, pipelining: 1 })
  const latencies: number[] = []
  let ok = 0
  let errors = 0
  const start = performance.now()
  const deadline = start + durationMs
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const r = await one(pool, t)
        latencies.push(r.ms)
        if (r.ok) ok++
        else errors++
      }
    }),
  )
  const elapsedMs = performance.now() - start
  await pool.close()
  return { sent: ok + errors, ok, errors, elapsedMs, latencies: latencies.sort((a, b) => a - b) }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i] ?? Number.NaN
}
