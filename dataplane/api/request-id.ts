// The request id every answer carries (`x-request-id`) and every access-log line names. A client's
// own id is kept when it is safe to echo into a header, a log line and an upstream request: 1–128
// visible ASCII characters without quotes or backslashes (no header splitting, no log forging, no
// 5 MB ids). Anything else is replaced by a fresh UUID rather than refused: an id is a courtesy,
// not part of the request.
import { RANDOM_POOL, takeRandom } from '../random-pool.js'

const VALID = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/

export function isValidRequestId(id: string): boolean {
  return VALID.test(id)
}

/** The client's id when valid, else a new UUID. */
export function requestIdOf(incoming: string | undefined): string {
  return incoming !== undefined && incoming !== '' && VALID.test(incoming) ? incoming : newUuid()
}

// A version 4 UUID as `crypto.randomUUID` makes it (random bytes from the shared pool, filled by
// the CSPRNG 4 KiB at a time as Node's own cache does), written into one 36-byte buffer and read as
// one flat string. Node's randomUUID joins 20 pieces with `+`: about 0.55 KiB of rope strings per
// id in the data plane's allocation profile, flattened again when the id is written to a header.
const HEX = Buffer.from('0123456789abcdef')
const text = Buffer.from('00000000-0000-4000-8000-000000000000', 'latin1')
/** Where each of the 16 bytes' two hex digits go in the text. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34]

export function newUuid(): string {
  const from = takeRandom(16)
  for (let i = 0; i < 16; i++) {
    let v = RANDOM_POOL[from + i] as number
    // RFC 9562: version 4 in the high nibble of byte 6, variant 10 in the top bits of byte 8.
    if (i === 6) v = (v & 0x0f) | 0x40
    else if (i === 8) v = (v & 0x3f) | 0x80
    const p = AT[i] as number
    text[p] = HEX[v >> 4] as number
    text[p + 1] = HEX[v & 15] as number
  }
  return text.toString('latin1', 0, 36)
}
