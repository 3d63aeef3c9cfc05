// vegeta (github.com/tsenart/vegeta), the load tool of `npm run bench:proxy`: a standard, widely
// used HTTP load generator in Go, so the numbers do not depend on our own client. Built once from
// the Go module proxy into a cache (like hack/cluster caches its binaries and peers.ts the peer
// routers), then run as a separate process per attack; its JSON report is parsed here.
import { execFile } from 'node:child_process'
import { access, constants, mkdir, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Pinned so every run uses the same tool; override with VEGETA_VERSION. */
export const VEGETA_MODULE = 'github.com/tsenart/vegeta/v12'
export const VEGETA_VERSION = process.env['VEGETA_VERSION'] || 'v12.13.0'

export type ToolInstall =
  | { readonly ok: true; readonly bin: string; readonly version: string }
  | { readonly ok: false; readonly reason: string }

export function toolsDir(): string {
  const cache = process.env['INFER_GATEWAY_CACHE'] || join(homedir(), '.cache', 'infer-gateway')
  return join(cache, 'tools')
}

async function executable(p: string): Promise<boolean> {
  try {
    await access(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

export interface EnsureToolOptions {
  /** Where tools live (default: toolsDir()). */
  readonly dir?: string
  /** The Go toolchain (default: go on PATH). */
  readonly go?: string
}

/**
 * `GOBIN=<dir>/vegeta-<version> go install github.com/tsenart/vegeta/v12@<version>` on first use
 * (a few minutes on a busy machine), reused afterwards. Failures come back as a reason to print.
 */
export async function ensureVegeta(o: EnsureToolOptions = {}): Promise<ToolInstall> {
  const binDir = join(o.dir ?? toolsDir(), `vegeta-${VEGETA_VERSION}`)
  const bin = join(binDir, 'vegeta')
  if (await executable(bin)) return { ok: true, bin, version: VEGETA_VERSION }
  try {
    await mkdir(binDir, { recursive: true })
    await run(o.go ?? 'go', ['install', `${VEGETA_MODULE}@${VEGETA_VERSION}`], {
      env: { ...process.env, GOBIN: binDir, CGO_ENABLED: '0' },
      timeout: 1_200_000,
    })
  } catch (e) {
    const err = e as { stderr?: string; message?: string }
    const lines = (err.stderr || err.message || String(e)).trim().split('\n')
    return {
      ok: false,
      reason: `go install ${VEGETA_MODULE}@${VEGETA_VERSION} failed: ${(lines[lines.length - 1] ?? '').slice(0, 200)}`,
    }
  }
  if (!(await executable(bin))) {
    return { ok: false, reason: `go install left no vegeta binary in ${binDir}` }
  }
  return { ok: true, bin, version: VEGETA_VERSION }
}

/** The numbers bench:proxy uses from `vegeta report -type=json`; times in ms. */
export interface VegetaReport {
  readonly requests: number
  /** Successful responses per second over the attack (vegeta's "throughput"). */
  readonly throughput: number
  /** Fraction of responses with a 2xx/3xx status, 0..1. */
  readonly success: number
  readonly meanMs: number
  readonly p50Ms: number
  readonly p90Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly statusCodes: Readonly<Record<string, number>>
  /** Distinct error strings vegeta saw (connection refused, timeouts, non-2xx statuses). */
  readonly errors: readonly string[]
}

export class VegetaError extends Error {
  readonly code: 'VEGETA_BAD_REPORT' | 'VEGETA_FAILED'
  constructor(code: 'VEGETA_BAD_REPORT' | 'VEGETA_FAILED', message: string) {
    super(message)
    this.name = 'VegetaError'
    this.code = code
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function num(o: Record<string, unknown>, key: string, path: string): number {
  const v = o[key]
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new VegetaError('VEGETA_BAD_REPORT', `vegeta report: ${path}${key} is not a number`)
  }
  return v
}

const NS_PER_MS = 1e6

/** Parses `vegeta report -type=json` (latencies in nanoseconds) into milliseconds. */
export function parseVegetaReport(text: string): VegetaReport {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw new VegetaError('VEGETA_BAD_REPORT', `vegeta report is not JSON: ${text.slice(0, 120)}`)
  }
  if (!isRecord(doc)) throw new VegetaError('VEGETA_BAD_REPORT', 'vegeta report is not an object')
  const lat = doc['latencies']
  if (!isRecord(lat)) {
    throw new VegetaError('VEGETA_BAD_REPORT', 'vegeta report: latencies is not an object')
  }
  const codes: Record<string, number> = {}
  const rawCodes = doc['status_codes']
  if (isRecord(rawCodes)) {
    for (const [k, v] of Object.entries(rawCodes)) if (typeof v === 'number') codes[k] = v
  }
  const rawErrors = doc['errors']
  const errors = Array.isArray(rawErrors)
    ? rawErrors.filter((e): e is string => typeof e === 'string')
    : []
  return {
    requests: num(doc, 'requests', ''),
    throughput: num(doc, 'throughput', ''),
    success: num(doc, 'success', ''),
    meanMs: num(lat, 'mean', 'latencies.') / NS_PER_MS,
    p50Ms: num(lat, '50th', 'latencies.') / NS_PER_MS,
    p90Ms: num(lat, '90th', 'latencies.') / NS_PER_MS,
    p99Ms: num(lat, '99th', 'latencies.') / NS_PER_MS,
    maxMs: num(lat, 'max', 'latencies.') / NS_PER_MS,
    statusCodes: codes,
    errors,
  }
}

/** Requests that did not succeed, from a report. */
export function failures(r: VegetaReport): number {
  return Math.round(r.requests * (1 - r.success))
}

/** "" when every request succeeded, else the statuses and first error, for the console. */
export function describeFailures(r: VegetaReport): string {
  if (failures(r) === 0) return ''
  const codes = Object.entries(r.statusCodes)
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, n]) => `${code === '0' ? 'no response' : code}×${n}`)
    .join(', ')
  const first = r.errors[0] === undefined ? '' : `; first error: ${r.errors[0].slice(0, 160)}`
  return ` (${codes}${first})`
}

export interface Attack {
  /** The target, or several that vegeta takes in turn, one request each (round-robin). */
  readonly url: string | readonly string[]
  /** Path of a file holding the JSON request body. */
  readonly bodyFile: string
  /** Requests per second; 0 = closed loop with `workers` concurrent requests (max throughput). */
  readonly rate: number
  readonly workers?: number
  readonly seconds: number
  /** Where vegeta writes its binary results (readable by `report`). */
  readonly output: string
}

/** Runs one `vegeta attack` to completion. */
export async function attack(bin: string, a: Attack): Promise<void> {
  const targets = `${a.output}.targets`
  const urls = typeof a.url === 'string' ? [a.url] : a.url
  await writeFile(
    targets,
    urls.map((u) => `POST ${u}\nContent-Type: application/json\n@${a.bodyFile}\n`).join('\n'),
  )
  const args = [
    'attack',
    `-targets=${targets}`,
    `-duration=${a.seconds}s`,
    '-timeout=30s',
    `-output=${a.output}`,
  ]
  if (a.rate > 0) args.push(`-rate=${a.rate}/1s`)
  else {
    const w = String(a.workers ?? 64)
    // rate=0 is vegeta's closed loop: each worker sends its next request when the last one ends.
    args.push('-rate=0', `-workers=${w}`, `-max-workers=${w}`)
  }
  try {
    await run(bin, args, { timeout: (a.seconds + 60) * 1000, maxBuffer: 16 << 20 })
  } catch (e) {
    const err = e as { stderr?: string; message?: string }
    throw new VegetaError(
      'VEGETA_FAILED',
      `vegeta attack ${a.url} failed: ${(err.stderr || err.message || String(e)).trim().slice(0, 300)}`,
    )
  }
}

/** `vegeta report -type=json` over one or more result files (latencies merged across them). */
export async function report(bin: string, files: readonly string[]): Promise<VegetaReport> {
  const { stdout } = await run(bin, ['report', '-type=json', ...files], {
    timeout: 120_000,
    maxBuffer: 16 << 20,
  })
  return parseVegetaReport(stdout)
}
