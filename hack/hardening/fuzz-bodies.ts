// Seeded request bodies for fuzzing the gateway: valid chat / completions / embeddings bodies,
// mutated the ways hostile or broken clients do (deep nesting, type swaps, huge strings, odd
// keys and characters, random bytes). Case `i` of seed `s` is always the same bytes, so a failure
// found by a 100k run is reproduced by `fuzzCase(s, i)` alone.
import { createRng, hash32 } from '../sim/rng.js'

export type FuzzPath = '/v1/chat/completions' | '/v1/completions' | '/v1/embeddings'

export interface FuzzCase {
  readonly index: number
  readonly path: FuzzPath
  readonly body: Buffer
  /** The mutations applied, in order (`valid` when none): for reports and reproduction. */
  readonly kinds: readonly string[]
}

export interface FuzzOptions {
  /** A model the gateway routes (most bodies name it, so they reach the request path's depths). */
  readonly model: string
  /** Largest huge string in bytes (default 1 MiB). */
  readonly maxStringBytes?: number
  /** Deepest nesting generated (default 20,000 levels). */
  readonly maxDepth?: number
}

type Rng = () => number
type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

/**
 * Raw JSON text JSON.stringify cannot make (deep nesting, 1e400): the tree holds a placeholder
 * string naming an entry of the case's raw table, swapped for the text after serialising.
 */
const RAW = '\u0000raw:'

const PATHS: readonly FuzzPath[] = ['/v1/chat/completions', '/v1/completions', '/v1/embeddings']

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)] as T
}

function int(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1))
}

function baseBody(rng: Rng, path: FuzzPath, model: string): Record<string, Json> {
  const text = `fuzz ${Math.floor(rng() * 1e9)} the quick brown fox`
  if (path === '/v1/embeddings') return { model, input: rng() < 0.5 ? text : [text, 'second'] }
  if (path === '/v1/completions')
    return {
      model,
      prompt: rng() < 0.7 ? text : [text, 'another prompt'],
      max_tokens: int(rng, 1, 4),
      ...(rng() < 0.3 ? { stream: true } : {}),
    }
  const messages: Json[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: text },
  ]
  if (rng() < 0.3) {
    messages.push({
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_1',
          type: 'function',
          function: { name: 'lookup', arguments: '{"q":"fox"}' },
        },
      ],
    })
    messages.push({ role: 'tool', tool_call_id: 'call_1', content: 'a fox' })
  }
  return {
    model,
    messages,
    max_tokens: int(rng, 1, 4),
    ...(rng() < 0.3 ? { stream: true, stream_options: { include_usage: true } } : {}),
    ...(rng() < 0.2
      ? {
          tools: [
            {
              type: 'function',
              function: { name: 'lookup', parameters: { type: 'object', properties: {} } },
            },
          ],
        }
      : {}),
    ...(rng() < 0.2 ? { temperature: 0.5, user: 'u-1' } : {}),
  }
}

/** Every container and leaf position in the tree, as parent + key (root excluded). */
function positions(v: Json): { parent: Json[] | { [k: string]: Json }; key: string | number }[] {
  const out: { parent: Json[] | { [k: string]: Json }; key: string | number }[] = []
  const walk = (x: Json): void => {
    if (Array.isArray(x)) {
      x.forEach((c, i) => {
        out.push({ parent: x, key: i })
        walk(c)
      })
    } else if (x !== null && typeof x === 'object') {
      for (const k of Object.keys(x)) {
        out.push({ parent: x, key: k })
        walk(x[k] as Json)
      }
    }
  }
  walk(v)
  return out
}

function setAt(p: { parent: Json[] | { [k: string]: Json }; key: string | number }, v: Json): void {
  if (Array.isArray(p.parent)) p.parent[p.key as number] = v
  else p.parent[p.key as string] = v
}

function nested(rng: Rng, depth: number): string {
  const shape = rng()
  if (shape < 0.4) return `${'['.repeat(depth)}1${']'.repeat(depth)}`
  if (shape < 0.8) return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`
  // Alternating: messages-like objects holding arrays.
  const pairs = Math.ceil(depth / 2)
  return `${'{"content":['.repeat(pairs)}"x"${']}'.repeat(pairs)}`
}

/** A JSON string literal of about `n` characters, built from a pre-escaped unit (stringifying
 * megabytes of escapes per case would make the generator, not the gateway, the bottleneck). */
function hugeLiteral(rng: Rng, max: number): { literal: string; length: number } {
  const r = rng()
  // Mostly kilobytes (cheap to make and send), now and then the maximum.
  const n = r < 0.7 ? int(rng, 64, 4096) : r < 0.97 ? int(rng, 4096, 64 * 1024) : max
  const alphabet = ['a', 'b', 'é', '字', '😀', ' ', '\\', '"', '\n', '\u0000', '\u2028', '\ud800']
  const unit = Array.from({ length: 64 }, () => (rng() < 0.8 ? 'a' : pick(rng, alphabet))).join('')
  const escaped = JSON.stringify(unit).slice(1, -1)
  const times = Math.max(1, Math.ceil(n / unit.length))
  return { literal: `"${escaped.repeat(times)}"`, length: times * unit.length }
}

const SWAPS: readonly (() => Json)[] = [
  () => null,
  () => true,
  () => 0,
  () => -1,
  () => 1e308,
  () => 3.14,
  () => '',
  () => 'str',
  () => [],
  () => ({}),
  () => [[]],
  () => [null, 1, 'x'],
  () => ({ nested: { deeper: [1] } }),
]
const RAW_SWAPS: readonly string[] = ['1e400', '-0', '123456789012345678901234567890', '-1e-400']

function swapValue(rng: Rng, ctx: Ctx): Json {
  return rng() < 0.2 ? raw(ctx, pick(rng, RAW_SWAPS)) : pick(rng, SWAPS)()
}

const ODD_STRINGS: readonly string[] = [
  '\ud800',
  '\udfff\ud800',
  '\u0000',
  'm\u0000x',
  '\u202eevil',
  '😀'.repeat(100),
  ' ',
  '../../etc/passwd',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal log4j-style probe, not a template
  '${jndi:ldap://x}',
  '<script>',
  'a'.repeat(100_000),
]

const ODD_KEYS: readonly string[] = [
  '__proto__',
  'constructor',
  'prototype',
  '',
  'k'.repeat(10_000),
  'model ',
  'MODEL',
  '\u0000',
]

interface Ctx {
  readonly o: Required<FuzzOptions>
  readonly raws: string[]
}

type Mutation = (rng: Rng, root: Record<string, Json>, ctx: Ctx) => string

function raw(ctx: Ctx, text: string): string {
  ctx.raws.push(text)
  return `${RAW}${ctx.raws.length - 1}`
}

const MUTATIONS: Record<string, Mutation> = {
  deep(rng, root, ctx) {
    const ps = positions(root)
    const depth = pick(rng, [10, 100, 1000, 3000, 5000, 10_000, ctx.o.maxDepth])
    const target = ps.length > 0 && rng() < 0.8 ? pick(rng, ps) : { parent: root, key: 'extra' }
    setAt(target, raw(ctx, nested(rng, depth)))
    return `deep:${depth}`
  },
  swap(rng, root, ctx) {
    // Top-level fields most often: they are what the gateway reads.
    const p =
      rng() < 0.5 ? { parent: root, key: pick(rng, Object.keys(root)) } : pick(rng, positions(root))
    if (p === undefined) return 'swap:none'
    setAt(p, swapValue(rng, ctx))
    return `swap:${String(p.key)}`
  },
  huge(rng, root, ctx) {
    const ps = positions(root).filter((p) => {
      const v = Array.isArray(p.parent) ? p.parent[p.key as number] : p.parent[p.key as string]
      return typeof v === 'string'
    })
    const p = ps.length > 0 && rng() < 0.8 ? pick(rng, ps) : { parent: root, key: 'model' }
    const h = hugeLiteral(rng, ctx.o.maxStringBytes)
    setAt(p, raw(ctx, h.literal))
    return `huge:${String(p.key)}:${h.length}`
  },
  odd(rng, root) {
    const p = rng() < 0.5 ? { parent: root, key: 'model' } : pick(rng, positions(root))
    if (p === undefined) return 'odd:none'
    setAt(p, pick(rng, ODD_STRINGS))
    return `odd:${String(p.key)}`
  },
  key(rng, root, ctx) {
    const k = pick(rng, ODD_KEYS)
    root[k] = swapValue(rng, ctx)
    return `key:${k.slice(0, 12)}`
  },
  drop(rng, root) {
    const k = pick(rng, Object.keys(root))
    delete root[k]
    return `drop:${k}`
  },
  wide(rng, root, ctx) {
    const n = rng() < 0.9 ? pick(rng, [10, 100, 1000]) : 50_000
    const k = pick(rng, ['messages', 'prompt', 'input', 'tools', 'stop'])
    // Wide `input` lists are refused (objects), not embedded: 50,000 valid inputs would make the
    // engine, not the gateway, the subject of the run (a 150 MB embeddings answer).
    const item =
      k === 'messages' ? '{"role":"user","content":"m"}' : k === 'input' ? '{"x":1}' : '"s"'
    root[k] = raw(ctx, `[${`${item},`.repeat(n - 1)}${item}]`)
    return `wide:${k}:${n}`
  },
}

const BYTE_MUTATIONS: Record<string, (rng: Rng, b: Buffer) => Buffer> = {
  truncate: (rng, b) => b.subarray(0, Math.floor(rng() * b.length)),
  insert(rng, b) {
    const at = Math.floor(rng() * b.length)
    const junk = Buffer.from(Array.from({ length: int(rng, 1, 64) }, () => int(rng, 0, 255)))
    return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)])
  },
  flip(rng, b) {
    const c = Buffer.from(b)
    for (let i = int(rng, 1, 8); i > 0; i--) {
      const at = Math.floor(rng() * c.length)
      c[at] = int(rng, 0, 255)
    }
    return c
  },
  utf8(rng, b) {
    const at = Math.floor(rng() * b.length)
    const bad = pick(rng, [[0xff], [0xfe, 0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90]])
    return Buffer.concat([b.subarray(0, at), Buffer.from(bad), b.subarray(at)])
  },
  wrap: (rng, b) =>
    pick(rng, [
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]),
      Buffer.concat([b, Buffer.from('{"model":"x"}')]),
      Buffer.concat([b, Buffer.from(' garbage')]),
      Buffer.concat([Buffer.from('  \n\t'), b]),
      Buffer.concat([b, b]),
    ]),
  duplicate(rng, b) {
    // Text-level duplicate keys: JSON.stringify cannot write them.
    const dup = pick(rng, ['"model":123,', '"model":null,', '"messages":"x",', '"stream":"yes",'])
    const at = b.indexOf('{')
    return at < 0 ? b : Buffer.concat([b.subarray(0, at + 1), Buffer.from(dup), b.subarray(at + 1)])
  },
}

function serialize(root: Record<string, Json>, raws: readonly string[]): string {
  const text = JSON.stringify(root)
  if (raws.length === 0) return text
  // Placeholders went through JSON.stringify as strings: swap the quoted form for the raw text.
  return text.replace(/"\\u0000raw:(\d+)"/g, (_, i: string) => raws[Number(i)] ?? 'null')
}

/** Case `index` of `seed`: the same bytes every time. */
export function fuzzCase(seed: number, index: number, opts: FuzzOptions): FuzzCase {
  const ctx: Ctx = {
    o: { maxStringBytes: 1024 * 1024, maxDepth: 20_000, ...opts },
    raws: [],
  }
  const rng = createRng(hash32(`fuzz:${index}`, seed))
  const basePath = pick(rng, PATHS)
  // Now and then a body for one API sent to another.
  const path = rng() < 0.1 ? pick(rng, PATHS) : basePath
  const root = baseBody(rng, basePath, ctx.o.model)
  const kinds: string[] = []
  if (rng() < 0.12) {
    return { index, path, body: Buffer.from(serialize(root, ctx.raws)), kinds: ['valid'] }
  }
  const names = Object.keys(MUTATIONS)
  for (let n = int(rng, 1, 3); n > 0; n--) {
    const name = pick(rng, names)
    kinds.push((MUTATIONS[name] as Mutation)(rng, root, ctx))
  }
  let body: Buffer = Buffer.from(serialize(root, ctx.raws))
  if (rng() < 0.3) {
    const name = pick(rng, Object.keys(BYTE_MUTATIONS))
    body = (BYTE_MUTATIONS[name] as (rng: Rng, b: Buffer) => Buffer)(rng, body)
    kinds.push(`bytes:${name}`)
  }
  return { index, path, body, kinds }
}
