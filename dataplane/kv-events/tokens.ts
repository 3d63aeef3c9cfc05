// Token ids for hashing a request's prompt the way the engine hashes it. Blocks only match the
// engine's if the ids are the engine's, so the tokenizer must be the model's:
//  - a path to the model's `tokenizer.json`: loaded with @huggingface/tokenizers (lazily, off the
//    request path; until it is ready the kv-cache scorer falls back to the approximate index);
//  - `words`: the engine simulator's tokenizer (one token per word or punctuation mark with the
//    whitespace before it), each token's id being the FNV-1a hash of its text. For the simulator
//    only; defined here so the data plane imports nothing from the simulator (the simulator's
//    tokenizer uses this same expression).
// The prompt text of a chat request: with a `tokenizer.json` path whose directory also holds a
// `tokenizer_config.json` with a `chat_template`, that template rendered the way vLLM renders it
// (chat-template.ts, loaded with the tokenizer); otherwise, or until it is loaded, or when it fails
// on a request, the scheduler's flattened chat prompt (scheduler/prompt.ts, ChatML framing), which
// matches only engines whose chat template is ChatML.

import { readFile } from 'node:fs/promises'
import { stderrLogger } from '../log.js'
import { type ChatTemplate, loadChatTemplate } from './chat-template.js'

/** One token per word (letters, digits, underscore) or punctuation mark, with its leading spaces. */
export const WORD_TOKEN_RE = /\s*[\p{L}\p{N}_]+|\s*[^\s\p{L}\p{N}_]/gu

export type TokenIds = (text: string) => ArrayLike<number>

/** FNV-1a (32-bit) of a token's UTF-16 units: the simulator's token id. */
export function wordId(token: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

export function wordTokenIds(text: string): Uint32Array {
  const toks = text.match(WORD_TOKEN_RE) ?? []
  const out = new Uint32Array(toks.length)
  for (let i = 0; i < toks.length; i++) out[i] = wordId(toks[i] as string)
  return out
}

type Loaded =
  | { state: 'loading' }
  | { state: 'ready'; ids: TokenIds; chat: ChatTemplate | undefined; chatError?: string }
  | { state: 'failed'; error: string }
const loaded = new Map<string, Loaded>()
const log = stderrLogger('kv-cache')

async function loadHf(file: string): Promise<Extract<Loaded, { state: 'ready' }>> {
  const { Tokenizer } = await import('@huggingface/tokenizers')
  const json = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  const tok = new Tokenizer(json, {})
  // Logged once per template: a template that fails on one request likely fails on many.
  const chat = await loadChatTemplate(file, (error) =>
    log('warn', 'chat template failed to render; using the ChatML-shaped prompt', {
      tokenizer: file,
      error,
    }),
  )
  if (chat.template === undefined && chat.error !== undefined)
    log('warn', 'chat template not loaded; using the ChatML-shaped prompt', {
      tokenizer: file,
      error: chat.error,
    })
  return {
    state: 'ready',
    // The chat template already added the special tokens as text; no extra BOS here.
    ids: (t) => tok.encode(t, { add_special_tokens: false }).ids,
    chat: chat.template,
    ...(chat.template === undefined && chat.error !== undefined ? { chatError: chat.error } : {}),
  }
}

/**
 * The tokenizer named by the plugin's `tokenizer` argument, or undefined while it loads (or when it
 * failed to load: then `tokenizerError` says why).
 */
export function tokenizerFor(spec: string): TokenIds | undefined {
  if (spec === 'words') return wordTokenIds
  const l = loaded.get(spec)
  if (l?.state === 'ready') return l.ids
  if (l !== undefined) return undefined
  loaded.set(spec, { state: 'loading' })
  setImmediate(() => {
    loadHf(spec).then(
      (ready) => loaded.set(spec, ready),
      (e: unknown) => loaded.set(spec, { state: 'failed', error: (e as Error).message }),
    )
  })
  return undefined
}

export function tokenizerError(spec: string): string | undefined {
  const l = loaded.get(spec)
  return l?.state === 'failed' ? l.error : undefined
}

/**
 * The model's chat template loaded with the tokenizer `spec`, or undefined (none beside it, not
 * loaded yet, failed to load, or `words`): chat requests then use the ChatML-shaped prompt.
 */
export function chatTemplateFor(spec: string): ChatTemplate | undefined {
  const l = loaded.get(spec)
  return l?.state === 'ready' ? l.chat : undefined
}

/** Why the chat template beside the tokenizer `spec` did not load, if it did not. */
export function chatTemplateError(spec: string): string | undefined {
  const l = loaded.get(spec)
  return l?.state === 'ready' ? l.chatError : undefined
}
