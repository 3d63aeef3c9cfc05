// The request id every answer carries (`x-request-id`) and every access-log line names. A client's
// own id is kept when it is safe to echo into a header, a log line and an upstream request: 1–128
// visible ASCII characters without quotes or backslashes (no header splitting, no log forging, no
// 5 MB ids). Anything else is replaced by a fresh UUID rather than refused: an id is a courtesy,
// not part of the request.
import { randomUUID } from 'node:crypto'

const VALID = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/

export function isValidRequestId(id: string): boolean {
  return VALID.test(id)
}

/** The client's id when valid, else a new UUID. */
export function requestIdOf(incoming: string | undefined): string {
  return incoming !== undefined && incoming !== '' && VALID.test(incoming) ? incoming : randomUUID()
}
