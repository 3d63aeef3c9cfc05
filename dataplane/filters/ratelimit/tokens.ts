// Counting input tokens before a request is proxied, so token limits can be reserved up front.
//
// Which counter a model gets, first match wins:
// 1. the policy's `rateLimit.tokenizers` entries (tiktoken encoding, an HF tokenizer.json file,
//    or a calibrated chars-per-token ratio);
// 2. OpenAI-family names (gpt-4o/4.1/5, o1/o3/o4 → o200k_base; gpt-4, gpt-3.5, text-embedding-* →
//    cl100k_base) via js-tiktoken;
// 3. the built-in estimate (estimateTokens below).
// Encodings and tokenizer files load in the background; until one is ready the estimate stands in,
// so no request ever waits for a load. Texts beyond EXACT_CHARS are counted exactly on a prefix and
// extrapolated, which bounds the CPU a single huge prompt can take on the event loop.
//
// The estimate was calibrated against cl100k_base/o200k_base on English prose and Markdown (our
// README, ARCHITECTURE.md: +3..6%), TypeScript (+8%), JSON (+16%), German (-22%, long compounds),
// Chinese/Japanese (-12%..0% vs cl100k, +40% vs o200k) and Russian (-8% vs cl100k) — erring high on
// the common cases, which reserves a little too much and refunds it when the engine's usage
// arrives. docs/auth-and-limits.md has the table.
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { SnapshotTokenizer } from '../../../api/snapshot.js'
import type { Logger } from '../../log.js'
import { stringTest } from '../../router.js'

export interface TokenCounter {
  readonly kind: 'tiktoken' | 'hf' | 'estimate' | 'ratio'
  count(text: string): number
}

/** Longest text tokenized exactly; longer ones are extrapolated from this prefix. */
export const EXACT_CHARS = 16_384

function isWide(c: number): boolean {
  // CJK punctuation, kana, CJK ideographs, Hangul, compatibility ideographs.
  return (
    (c >= 0x3000 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff)
  )
}

/**
 * Tokens of a text without a tokenizer: ASCII letter runs ≈ 1 token per 6 letters, digit runs
 * per 3 digits (BPE vocabularies split numbers into 1–3 digit groups), ASCII punctuation runs per
 * 2 characters, CJK ≈ 1 per character, other non-ASCII (Cyrillic, Greek, accented) ≈ 0.45 per
 * character. Whitespace is folded into the next token, as BPE merges do.
 */
export function estimateTokens(text: string): number {
  let n = 0
  let kind = 0
  let run = 0
  const flush = (): void => {
    if (run === 0) return
    if (kind === 1) n += Math.ceil(run / 6)
    else if (kind === 2) n += Math.ceil(run / 3)
    else if (kind === 3) n += Math.ceil(run / 2)
    run = 0
  }
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    let k: number
    if ((c >= 97 && c <= 122) || (c >= 65 && c <= 90)) k = 1
    else if (c >= 48 && c <= 57) k = 2
    else if (c === 32 || c === 10 || c === 9 || c === 13) k = 0
    else if (c < 128) k = 3
    else {
      flush()
      kind = 0
      if (c >= 0xd800 && c <= 0xdbff) {
        // A surrogate pair (emoji, rare ideographs): one code point, typically 1–2 tokens.
        n += 1.5
        i++
      } else n += isWide(c) ? 1 : 0.45
      continue
    }
    if (k !== kind) {
      flush()
      kind = k
    }
    if (k !== 0) run++
  }
  flush()
  return Math.ceil(n)
}

export const ESTIMATE: TokenCounter = { kind: 'estimate', count: estimateTokens }

export function ratioCounter(charsPerToken: number): TokenCounter {
  return { kind: 'ratio', count: (t) => Math.ceil(t.length / charsPerToken) }
}

/** Exact count of a bounded prefix, extrapolated for longer texts. */
export function countBounded(counter: TokenCounter, text: string): number {
  if (text.length <= EXACT_CHARS) return counter.count(text)
  const head = counter.count(text.slice(0, EXACT_CHARS))
  return Math.ceil((head * text.length) / EXACT_CHARS)
}

// ---------------------------------------------------------------------------------------------
// loaded tokenizers, shared by every policy version (a reload never re-reads a loaded one)

type Loaded = { state: 'loading' } | { state: 'ready'; counter: TokenCounter } | { state: 'failed' }
const loaded = new Map<string, Loaded>()

type Encoder = { encode(text: string, allowed?: string[], disallowed?: string[]): number[] }

async function loadTiktoken(encoding: string): Promise<TokenCounter> {
  const { Tiktoken } = await import('js-tiktoken/lite')
  let ranks: ConstructorParameters<typeof Tiktoken>[0]
  switch (encoding) {
    case 'o200k_base':
      ranks = (await import('js-tiktoken/ranks/o200k_base')).default
      break
    case 'p50k_base':
      ranks = (await import('js-tiktoken/ranks/p50k_base')).default
      break
    case 'r50k_base':
      ranks = (await import('js-tiktoken/ranks/r50k_base')).default
      break
    default:
      ranks = (await import('js-tiktoken/ranks/cl100k_base')).default
  }
  const enc: Encoder = new Tiktoken(ranks)
  // Special-token text in a prompt (`<|endoftext|>`) is counted as text, never an error.
  return { kind: 'tiktoken', count: (t) => enc.encode(t, [], []).length }
}

async function loadHf(file: string): Promise<TokenCounter> {
  const { Tokenizer } = await import('@huggingface/tokenizers')
  const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  let config: Record<string, unknown> = {}
  try {
    config = JSON.parse(
      await readFile(join(dirname(file), 'tokenizer_config.json'), 'utf8'),
    ) as Record<string, unknown>
  } catch {
    // tokenizer_config.json is optional: it only adds special-token settings.
  }
  const tok = new Tokenizer(json, config)
  return { kind: 'hf', count: (t) => tok.encode(t).ids.length }
}

function load(
  id: string,
  loader: () => Promise<TokenCounter>,
  log: Logger,
): TokenCounter | undefined {
  const l = loaded.get(id)
  if (l?.state === 'ready') return l.counter
  if (l !== undefined) return undefined
  loaded.set(id, { state: 'loading' })
  // Off the current tick: a big vocabulary parses for ~0.3–1 s; requests meanwhile estimate.
  setImmediate(() => {
    loader().then(
      (counter) => {
        loaded.set(id, { state: 'ready', counter })
        log('info', 'tokenizer loaded', { tokenizer: id })
      },
      (e: unknown) => {
        loaded.set(id, { state: 'failed' })
        log('error', 'tokenizer failed to load; using the estimate', {
          tokenizer: id,
          error: e instanceof Error ? e.message : String(e),
        })
      },
    )
  })
  return undefined
}

/** Resolves when every tokenizer asked for so far has loaded or failed (tests, benchmarks). */
export async function tokenizersSettled(timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while ([...loaded.values()].some((l) => l.state === 'loading') && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20))
  }
}

const OPENAI_O200K = /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o1|o3|o4|chatgpt-4o|gpt-oss)/
const OPENAI_CL100K = /^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada-002)/

/** Which counter each model name gets under one policy. */
export class TokenCounters {
  private readonly configs: readonly SnapshotTokenizer[]
  private readonly log: Logger
  private readonly byModel = new Map<string, () => TokenCounter>()
  /** Compiled once: `models` matches (regexes on the router's linear-time engine). */
  private readonly tests: readonly ((model: string) => boolean)[]

  constructor(configs: readonly SnapshotTokenizer[], log: Logger) {
    this.configs = configs
    this.tests = configs.map((c) => stringTest(c.match))
    this.log = log
  }

  /** Starts loading what these models will need, so first requests find it ready. */
  warm(models: Iterable<string>): void {
    for (const m of models) this.forModel(m)
  }

  forModel(model: string): TokenCounter {
    let f = this.byModel.get(model)
    if (f === undefined) {
      f = this.resolve(model)
      if (this.byModel.size < 10_000) this.byModel.set(model, f)
    }
    return f()
  }

  private resolve(model: string): () => TokenCounter {
    const cfg = this.configs[this.tests.findIndex((t) => t(model))]
    if (cfg?.charsPerToken !== undefined) {
      const c = ratioCounter(cfg.charsPerToken)
      return () => c
    }
    const id = cfg?.file !== undefined ? `hf:${cfg.file}` : undefined
    const encoding =
      cfg?.tiktoken ??
      (OPENAI_O200K.test(model)
        ? 'o200k_base'
        : OPENAI_CL100K.test(model)
          ? 'cl100k_base'
          : undefined)
    if (id !== undefined && cfg?.file !== undefined) {
      const file = cfg.file
      return () => load(id, () => loadHf(file), this.log) ?? ESTIMATE
    }
    if (encoding !== undefined) {
      return () => load(`tiktoken:${encoding}`, () => loadTiktoken(encoding), this.log) ?? ESTIMATE
    }
    return () => ESTIMATE
  }
}

// ---------------------------------------------------------------------------------------------
// what a request asks for

type Json = Readonly<Record<string, unknown>>

/** Tokens an image part costs at the least (OpenAI's low-detail price); the engine's usage settles. */
const IMAGE_TOKENS = 85

function contentTokens(content: unknown, count: (t: string) => number): number {
  if (typeof content === 'string') return count(content)
  if (!Array.isArray(content)) return 0
  let n = 0
  for (const part of content) {
    if (typeof part !== 'object' || part === null) continue
    const p = part as Json
    if (typeof p['text'] === 'string') n += count(p['text'])
    else if (p['type'] === 'image_url' || p['type'] === 'image') n += IMAGE_TOKENS
  }
  return n
}

function promptTokens(prompt: unknown, count: (t: string) => number): number {
  if (typeof prompt === 'string') return count(prompt)
  if (!Array.isArray(prompt)) return 0
  let n = 0
  for (const p of prompt) {
    if (typeof p === 'string') n += count(p)
    else if (typeof p === 'number') n += 1
    else if (Array.isArray(p)) n += p.length
  }
  return n
}

/** Input tokens of a chat/completions/embeddings body, by the model's counter. */
export function inputTokens(
  api: 'chat' | 'completions' | 'embeddings',
  body: Json,
  counter: TokenCounter,
): number {
  const count = (t: string) => countBounded(counter, t)
  if (api === 'completions') return promptTokens(body['prompt'], count)
  if (api === 'embeddings') return promptTokens(body['input'], count)
  let n = 3 // the assistant reply is primed with <|start|>assistant<|message|>
  const messages = body['messages']
  if (Array.isArray(messages)) {
    for (const m of messages) {
      if (typeof m !== 'object' || m === null) continue
      const msg = m as Json
      n += 4 + contentTokens(msg['content'], count)
      if (typeof msg['name'] === 'string') n += count(msg['name'])
      if (msg['tool_calls'] !== undefined) n += count(JSON.stringify(msg['tool_calls']))
    }
  }
  for (const k of ['tools', 'functions', 'response_format']) {
    if (body[k] !== undefined) n += count(JSON.stringify(body[k]))
  }
  return n
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined
}

/** Output tokens to reserve: max_completion_tokens / max_tokens (× n), bounded by the policy. */
export function outputReservation(
  api: 'chat' | 'completions' | 'embeddings',
  body: Json,
  reservation: { readonly default: number; readonly max: number },
): number {
  if (api === 'embeddings') return 0
  const asked = positiveInt(body['max_completion_tokens']) ?? positiveInt(body['max_tokens'])
  const choices = Math.min(
    16,
    Math.max(positiveInt(body['n']) ?? 1, positiveInt(body['best_of']) ?? 1),
  )
  return Math.min(asked ?? reservation.default, reservation.max) * choices
}
