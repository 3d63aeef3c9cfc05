// One JSON line per request: what a platform team greps when a user says "my request failed".
import type { Writable } from 'node:stream'

export interface AccessLogEntry {
  readonly time: string
  readonly request_id: string
  readonly method: string
  readonly path: string
  readonly status: number
  readonly duration_ms: number
  readonly model?: string
  readonly upstream_model?: string
  readonly route?: string
  readonly rule?: string
  readonly server?: string
  readonly endpoint?: string
  readonly attempts?: number
  readonly stream?: boolean
  readonly prompt_tokens?: number
  readonly completion_tokens?: number
  readonly first_byte_ms?: number
  readonly upstream_headers_ms?: number
  readonly bytes?: number
  readonly error_code?: string
  /** Authentication: how the caller was identified, who, their tenant and tier. Never a credential. */
  readonly auth?: string
  readonly subject?: string
  readonly tenant?: string
  readonly tier?: string
}

export type AccessLogger = (entry: AccessLogEntry) => void

/**
 * Lines of one event-loop turn go out together: the stream is corked at the first line and
 * uncorked on the next turn, so a pipe (a container's stdout) gets one writev for a turn's lines
 * instead of one write syscall per request. Order is kept; a crash can lose at most the lines of
 * the turn it happened in.
 */
export function jsonLineLogger(out: Writable): AccessLogger {
  let corked = false
  const uncork = (): void => {
    corked = false
    out.uncork()
  }
  return (entry) => {
    if (!corked) {
      corked = true
      out.cork()
      setImmediate(uncork)
    }
    out.write(`${JSON.stringify(entry)}\n`)
  }
}

export const discardLogger: AccessLogger = () => {}
