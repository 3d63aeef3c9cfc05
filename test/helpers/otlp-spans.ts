// Spans in one OTLP/HTTP traces request body, protobuf or JSON by its content type: what the
// tests' small stand-in endpoints count (the full check of span contents is against the
// Collector's own receiver, hack/otlp-receiver). Protobuf is walked by its wire format:
// ExportTraceServiceRequest.resource_spans (1) → ResourceSpans.scope_spans (2) → ScopeSpans.spans (2).
// And the receiver itself, started for a test.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { deadPort } from './upstream.js'

/** Length-delimited fields `field` of a protobuf message, as slices of it. */
function fields(msg: Uint8Array, field: number): Uint8Array[] {
  const out: Uint8Array[] = []
  let i = 0
  const varint = (): number => {
    let v = 0
    let shift = 0
    for (;;) {
      const b = msg[i++]
      if (b === undefined) throw new Error('truncated protobuf varint')
      v += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return v
      shift += 7
    }
  }
  while (i < msg.length) {
    const tag = varint()
    const wire = tag % 8
    if (wire === 0) varint()
    else if (wire === 1) i += 8
    else if (wire === 5) i += 4
    else if (wire === 2) {
      const len = varint()
      if (Math.floor(tag / 8) === field) out.push(msg.subarray(i, i + len))
      i += len
    } else throw new Error(`unexpected protobuf wire type ${wire}`)
  }
  return out
}

export function otlpSpanCount(body: Buffer, contentType: string | undefined): number {
  if (contentType?.startsWith('application/json') === true) {
    const b = JSON.parse(body.toString()) as {
      resourceSpans: { scopeSpans: { spans: unknown[] }[] }[]
    }
    let n = 0
    for (const rs of b.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length
    return n
  }
  if (contentType !== 'application/x-protobuf')
    throw new Error(`not an OTLP/HTTP content type: ${contentType}`)
  let n = 0
  for (const rs of fields(body, 1)) for (const ss of fields(rs, 2)) n += fields(ss, 2).length
  return n
}

/** The Collector's OTLP receiver (hack/otlp-receiver) on `host`, writing to `file`. */
export interface OtlpReceiver {
  readonly url: string
  readonly file: string
  stop(): Promise<void>
}

/** The receiver's binary, built on first use (CI builds it in hack/ensure-test-deps.sh). */
export function otlpReceiverBin(): string {
  const build = join(import.meta.dirname, '..', '..', 'hack', 'otlp-receiver', 'build.sh')
  const bin = spawnSync('bash', [build, '--print-bin'], { encoding: 'utf8' }).stdout.trim()
  if (!existsSync(bin)) spawnSync('bash', [build], { stdio: 'inherit' })
  return bin
}

/**
 * Starts the receiver on `host` (a free port) appending to `file`: the spans as OTLP JSON lines,
 * or with `countOnly` one span count per batch.
 */
export async function startOtlpReceiver(
  host: string,
  file: string,
  countOnly = false,
): Promise<OtlpReceiver> {
  const port = await deadPort(host)
  const p = spawn(
    otlpReceiverBin(),
    ['-http', `${host}:${port}`, '-out', file, ...(countOnly ? ['-count-only'] : [])],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise<void>((resolve, reject) => {
    p.once('error', reject)
    p.once('exit', (code) => reject(new Error(`otlp-receiver exited ${code}`)))
    p.stdout?.once('data', () => resolve())
  })
  return {
    url: `http://${host}:${port}`,
    file,
    stop: () =>
      new Promise<void>((resolve) => {
        if (p.exitCode !== null) return resolve()
        p.once('exit', () => resolve())
        p.kill('SIGTERM')
      }),
  }
}
