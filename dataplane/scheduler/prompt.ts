// The request's prompt as the scheduler sees it: chat messages flattened into one text the way a
// chat template would (so turn N's text is a prefix of turn N+1's), cut into fixed-size blocks of
// its UTF-8 bytes, each block's hash chained on everything before it. Two prompts share block i's
// hash iff they share their first (i+1) blocks of text, which is what an engine's prefix cache
// rewards.
//
// No tokenizer: blocks are `blockTokens × charsPerToken` bytes (about that many characters for
// Latin text). Block boundaries therefore do not line up with the engine's token blocks, but
// sharing is a property of the text prefix, so matching lengths stay proportional to what the
// engine will find in its cache.
//
// This runs on every request with prompts of tens of kilobytes, so the template is never
// concatenated: its pieces are UTF-8 encoded (natively) into one reused buffer and hashed four
// bytes at a time.

import { fmix32, hashString } from './state.js'

/** ChatML framing, the shape vLLM's default templates produce; only stability matters here. */
const OPEN = '<|im_start|>'
const CLOSE = '<|im_end|>\n'

/** Images and other non-text parts: long data URLs are represented by length and ends only. */
function partText(part: unknown): string {
  if (typeof part === 'string') return part
  if (typeof part !== 'object' || part === null) return ''
  const p = part as Record<string, unknown>
  if (typeof p['text'] === 'string') return p['text']
  const img = p['image_url']
  const url =
    typeof img === 'string'
      ? img
      : typeof img === 'object' && img !== null
        ? (img as Record<string, unknown>)['url']
        : undefined
  if (typeof url === 'string') {
    return url.length <= 256
      ? `<image:${url}>`
      : `<image:${url.length}:${url.slice(0, 96)}:${url.slice(-96)}>`
  }
  return typeof p['type'] === 'string' ? `<${p['type']}>` : ''
}

function contentText(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    let out = ''
    for (const part of content) out += partText(part)
    return out
  }
  return ''
}

function promptValue(v: unknown): string {
  if (typeof v === 'string') return v
  if (Array.isArray(v)) {
    const first: unknown = v[0]
    // A batch of prompts: the first one decides placement. Token ids: their decimal text.
    if (typeof first === 'string') return first
    if (typeof first === 'number') return v.join(',')
    if (Array.isArray(first)) return first.join(',')
  }
  return ''
}

/**
 * `tool_calls` as text for hashing. Never throws: placement must not fail a request, and a value
 * `JSON.stringify` cannot walk (nested past the stack) simply adds nothing to the prompt.
 */
function toolCallsText(calls: unknown): string {
  try {
    return JSON.stringify(calls) ?? ''
  } catch {
    return ''
  }
}

/**
 * The text an engine would prefill for this request body, as pieces to be read in order: chat
 * messages through a ChatML-style template (with the assistant generation prompt), `prompt` for
 * completions, `input` for embeddings. Empty when the body carries none.
 */
export function promptPieces(body: Readonly<Record<string, unknown>>): string[] {
  const messages = body['messages']
  if (Array.isArray(messages)) {
    const out: string[] = []
    for (const m of messages) {
      if (typeof m !== 'object' || m === null) continue
      const msg = m as Record<string, unknown>
      const role = typeof msg['role'] === 'string' ? msg['role'] : 'user'
      out.push(OPEN, role, '\n', contentText(msg['content']))
      const calls = msg['tool_calls']
      if (calls !== undefined) out.push(toolCallsText(calls))
      out.push(CLOSE)
    }
    out.push(OPEN, 'assistant\n')
    return out
  }
  if (body['prompt'] !== undefined) return [promptValue(body['prompt'])]
  if (body['input'] !== undefined) return [promptValue(body['input'])]
  return []
}

/** `promptPieces` joined: the flattened prompt as one string. */
export function flattenPrompt(body: Readonly<Record<string, unknown>>): string {
  return promptPieces(body).join('')
}

/** Output tokens the request may generate: what the client capped it at, or a typical answer. */
export function expectedOutputTokens(body: Readonly<Record<string, unknown>>, dflt = 256): number {
  for (const k of ['max_completion_tokens', 'max_tokens']) {
    const v = body[k]
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) return Math.min(v, 1_000_000)
  }
  return dflt
}

/** Seed of a prompt's hash chain: KV computed for one model or adapter is useless to another. */
export function chainSeed(model: string): number {
  return hashString(model)
}

const encoder = new TextEncoder()

/** The two lane states of the chained block hash, carried between mixBlock* calls. */
export const lanes = new Int32Array(2)

/** `lanes` at a chain's start for `seed`. */
export function seedLanes(seed: number): void {
  lanes[0] = seed | 0
  lanes[1] = (seed ^ 0x5bd1e995) | 0
}

/**
 * One block of the byte path of blockHashes: mixes b[from..end) into `lanes` (words past the end
 * padded with zero bytes: the buffer may hold stale bytes there) and returns the block's value.
 * A partial block also mixes in the low bits of `end` (its length's when it starts at a multiple of
 * 4), so "ab" and "ab\0" differ. The one place this is written: prompt-hasher's tail uses it.
 */
export function mixBlockBytes(b: Uint8Array, from: number, end: number): number {
  let h1 = lanes[0] as number
  let h2 = lanes[1] as number
  let lane = 0
  for (let i = from; i < end; i += 4) {
    const w =
      (b[i] as number) |
      (i + 1 < end ? (b[i + 1] as number) << 8 : 0) |
      (i + 2 < end ? (b[i + 2] as number) << 16 : 0) |
      (i + 3 < end ? (b[i + 3] as number) << 24 : 0)
    if (lane === 0) {
      h1 = Math.imul(h1 ^ w, 0x9e3779b1)
      h1 ^= h1 >>> 15
    } else {
      h2 = Math.imul(h2 ^ w, 0x85ebca77)
      h2 ^= h2 >>> 13
    }
    lane ^= 1
  }
  lanes[0] = h1
  lanes[1] = h2
  return fmix32(h1 ^ Math.imul(h2, 0xc2b2ae3d) ^ (end & 3)) & 0x3fffffff
}

/**
 * One whole block of the aligned path of blockHashes: mixes words[from..end) (two at a time, one
 * per lane) into `lanes` and returns the block's value (a whole block has no length mixed in):
 * blockHashes and headHash use it; prompt-hasher writes the same loop out in its hot path.
 */
export function mixBlockWords(words: Int32Array, from: number, end: number): number {
  let h1 = lanes[0] as number
  let h2 = lanes[1] as number
  for (let w = from; w < end; w += 2) {
    h1 = Math.imul(h1 ^ (words[w] as number), 0x9e3779b1)
    h2 = Math.imul(h2 ^ (words[w + 1] as number), 0x85ebca77)
    h1 ^= h1 >>> 15
    h2 ^= h2 >>> 13
  }
  lanes[0] = h1
  lanes[1] = h2
  return fmix32(h1 ^ Math.imul(h2, 0xc2b2ae3d)) & 0x3fffffff
}
let scratch = new Uint8Array(64 * 1024)

/**
 * Chained hashes of the UTF-8 bytes of `text` (one string or pieces read in order) cut into
 * `blockBytes`-byte blocks, the trailing partial block included, at most `maxBlocks`. The state
 * carries across block boundaries, so block i's value depends on every byte before its end; each
 * emitted value is the state finalised (fmix32) and kept to 30 bits, which V8 stores as a small
 * integer: lookups on the request path then neither allocate nor hash doubles. A chance collision
 * at 30 bits can only lengthen an already-matching chain by a block, so it is harmless here.
 */
export function blockHashes(
  text: string | readonly string[],
  blockBytes: number,
  maxBlocks: number,
  seed: number,
): Int32Array {
  const pieces = typeof text === 'string' ? [text] : text
  const max = blockBytes * maxBlocks
  let chars = 0
  for (const p of pieces) chars += p.length
  // UTF-8 needs at most 3 bytes per UTF-16 unit; encodeInto stops at whole characters when full.
  const cap = Math.min(max, chars * 3)
  if (scratch.length < cap) scratch = new Uint8Array(Math.max(cap, scratch.length * 2))
  let len = 0
  for (const p of pieces) {
    if (len >= cap) break
    len += encoder.encodeInto(p, scratch.subarray(len, cap)).written
  }
  const out = new Int32Array(Math.ceil(len / blockBytes))
  // Two lanes over alternating words: independent multiply chains the CPU runs in parallel.
  seedLanes(seed)
  let i = 0
  let k = 0
  if (LITTLE_ENDIAN && blockBytes % 8 === 0) {
    // The same words as the byte path below, read from an aligned view.
    const words = new Int32Array(scratch.buffer, 0, len >>> 2)
    const wordsPerBlock = blockBytes >>> 2
    for (let w = 0; i + blockBytes <= len; w += wordsPerBlock, i += blockBytes) {
      out[k++] = mixBlockWords(words, w, w + wordsPerBlock)
    }
  }
  while (i < len) {
    const end = Math.min(i + blockBytes, len)
    out[k++] = mixBlockBytes(scratch, i, end)
    i = end
  }
  return out
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** headHash's bytes, and the same as words (kept: the function allocates nothing). */
let headBytes = new Uint8Array(256)
let headWords = new Int32Array(headBytes.buffer)

/**
 * `blockHashes(pieces, blockBytes, 1, seed)[0] ?? 0`: the first block's hash (the partial one of
 * a shorter prompt; 0 for an empty one), the scheduler's tie key. An ASCII head is copied
 * character by character into a kept buffer (UTF-8 is then the characters), other text goes
 * through blockHashes. What it saves, per decision: blockHashes's result array, its words view
 * and an encodeInto subarray per piece, ~0.7 KiB.
 */
export function headHash(pieces: readonly string[], blockBytes: number, seed: number): number {
  if (!LITTLE_ENDIAN || blockBytes % 8 !== 0)
    return blockHashes(pieces, blockBytes, 1, seed)[0] ?? 0
  if (headBytes.length < blockBytes) {
    headBytes = new Uint8Array(blockBytes)
    headWords = new Int32Array(headBytes.buffer)
  }
  const buf = headBytes
  let len = 0
  for (let k = 0; k < pieces.length && len < blockBytes; k++) {
    const p = pieces[k] as string
    const n = Math.min(p.length, blockBytes - len)
    for (let i = 0; i < n; i++) {
      const c = p.charCodeAt(i)
      if (c >= 0x80) return blockHashes(pieces, blockBytes, 1, seed)[0] ?? 0
      buf[len++] = c
    }
  }
  if (len === 0) return 0
  // blockHashes's two paths for its first block: whole (words), or partial (bytes).
  seedLanes(seed)
  return len < blockBytes
    ? mixBlockBytes(buf, 0, len)
    : mixBlockWords(headWords, 0, blockBytes >>> 2)
}

/** Highest-random-weight score of `endpointHash` for `key`: larger wins; same on every replica. */
export function rendezvous(key: number, endpointHash: number): number {
  return fmix32(fmix32(key ^ endpointHash) + 0x9e3779b9)
}
