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

export function jsonLineLogger(out: Writable): AccessLogger {
  return (entry) => {
    out.write(`${JSON.stringify(entry)}\n`)
  }
}

export const discardLogger: AccessLogger = () => {}
