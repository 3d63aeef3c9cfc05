// Requests that fill the gateway's cache of hashed long prompt pieces (scheduler/prompt-hasher.ts)
// to its byte cap, for the soak's memory baseline. That cache is bounded (MAX_BYTES counted, text
// at 2 bytes a character) but fills only with long pieces seen twice: under the soak's mix, the
// fuzzed bodies' long strings feed it a few entries a minute, so it was still filling at the end of
// a 30-minute run and its rise (up to its cap, ~4 MB of heap) read as a creep of the heap after GC.
// Filled before the baseline, the cache is at its largest from the start: what it holds later
// replaces what it held, and growth past the baseline is something else.
//
// Each body has a system prompt of CJK characters (V8 keeps such a string at 2 bytes a character,
// so the bytes the cache counts are the bytes the heap holds), distinct at every position the cache
// samples for its fingerprint. Each body is sent twice in a row: the cache admits a piece on its
// second sighting.
import { MAX_BYTES } from '../../dataplane/scheduler/prompt-hasher.js'

export interface PromptCacheFillOptions {
  /** Characters per system prompt (default 8192). */
  readonly chars?: number
  /** The cap to fill (default the cache's own). */
  readonly maxBytes?: number
}

/** Bytes the cache counts for one prompt of `chars` 3-byte UTF-8 characters (64-byte blocks). */
function countedBytes(chars: number): number {
  return 2 * chars + 4 * Math.floor((3 * chars) / 64)
}

/** The system prompt of body `i`: CJK ideographs, every character depending on `i`. */
export function fillText(i: number, chars: number): string {
  const out: string[] = new Array(chars)
  for (let j = 0; j < chars; j++) {
    out[j] = String.fromCharCode(0x4e00 + ((i * 7919 + j * 31 + ((i * j) % 97)) % 20_000))
  }
  return out.join('')
}

/** Chat bodies for `model`, in the order to send them (each twice in a row). */
export function promptCacheFillBodies(model: string, o: PromptCacheFillOptions = {}): string[] {
  const chars = o.chars ?? 8192
  const cap = o.maxBytes ?? MAX_BYTES
  // 10 % over the cap: the cache evicts its oldest entries to make room for the last ones.
  const n = Math.ceil((1.1 * cap) / countedBytes(chars))
  const bodies: string[] = []
  for (let i = 0; i < n; i++) {
    const body = JSON.stringify({
      model,
      messages: [
        { role: 'system', content: fillText(i, chars) },
        { role: 'user', content: 'fill' },
      ],
      max_tokens: 1,
    })
    bodies.push(body, body)
  }
  return bodies
}
