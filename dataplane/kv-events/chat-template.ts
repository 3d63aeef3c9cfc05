// The model's own chat template, so chat requests are hashed over the text the engine prefills.
//
// vLLM renders a chat request with the template of the model's `tokenizer_config.json`
// (`apply_chat_template(messages, tools=…, tokenize=False, add_generation_prompt=True)`, with the
// config's special tokens such as `bos_token` in scope) and tokenizes the result without adding
// special tokens (the template carries BOS). The scheduler's flattened prompt (scheduler/prompt.ts)
// is ChatML-shaped, which only matches ChatML models; for a Llama 3 or Mistral template its first
// block differs and nothing matches. This renders the same string with @huggingface/jinja (pure JS,
// Hugging Face's port of the template subset used by chat templates).
//
// Messages are passed the way vLLM passes them. Its content format is detected from the template
// as vLLM's "auto" does: a template that loops over a message's content gets the OpenAI form (a
// list of parts; a string becomes one text part), any other the "string" form (the text parts
// joined by "\n"). Non-text parts (images) are passed as they came or left out, so a multimodal
// prompt differs from the engine's where its placeholders are. Assistant `tool_calls` arguments
// are parsed from their JSON string into objects, as vLLM does before rendering. Keys absent from
// the request stay absent (templates test `'tool_calls' in message`).

import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Template } from '@huggingface/jinja'

/** A compiled chat template with the special tokens of its config. */
export interface ChatTemplate {
  /**
   * The prompt text the engine prefills for this chat body, or undefined when the body is not a
   * chat request or the template failed on it (counted in `renderErrors`; the caller falls back).
   */
  render(body: Readonly<Record<string, unknown>>): string | undefined
  /** Render failures so far; `lastError` is the latest message. */
  readonly renderErrors: number
  readonly lastError: string | undefined
}

/** What a `tokenizer_config.json` yields: the template text and the tokens in its scope. */
export interface ChatTemplateConfig {
  readonly source: string
  /** bos_token, eos_token, unk_token, pad_token as strings (from strings or `{content}` objects). */
  readonly specialTokens: Readonly<Record<string, string>>
}

const SPECIAL_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const

function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'object' && v !== null) {
    const c = (v as Record<string, unknown>)['content']
    if (typeof c === 'string') return c
  }
  return undefined
}

/**
 * The chat template of a parsed `tokenizer_config.json`, or undefined when it has none. The list
 * form (`[{name, template}]`) uses the entry named "default", as transformers does.
 */
export function chatTemplateConfig(cfg: unknown): ChatTemplateConfig | undefined {
  if (typeof cfg !== 'object' || cfg === null) return undefined
  const c = cfg as Record<string, unknown>
  const t = c['chat_template']
  let source: string | undefined
  if (typeof t === 'string') source = t
  else if (Array.isArray(t)) {
    for (const e of t) {
      if (typeof e !== 'object' || e === null) continue
      const entry = e as Record<string, unknown>
      if (entry['name'] === 'default' && typeof entry['template'] === 'string')
        source = entry['template']
    }
  }
  if (source === undefined || source === '') return undefined
  const specialTokens: Record<string, string> = {}
  for (const k of SPECIAL_TOKENS) {
    const v = tokenText(c[k])
    if (v !== undefined) specialTokens[k] = v
  }
  return { source, specialTokens }
}

export type ContentFormat = 'string' | 'openai'

/**
 * vLLM's content-format detection, by pattern rather than its walk of the Jinja AST: a `for` loop
 * over `<var>.content` / `<var>['content']` means the template expects a list of parts.
 */
export function contentFormatOf(source: string): ContentFormat {
  return /\{%-?\s*for\s+\w+\s+in\s+\w+\s*(?:\.\s*content\b|\[\s*['"]content['"]\s*\])/.test(source)
    ? 'openai'
    : 'string'
}

/** Content as vLLM passes it in `format`. */
function contentValue(content: unknown, format: ContentFormat): unknown {
  if (format === 'openai') {
    if (content === undefined || content === null) return []
    return typeof content === 'string' ? [{ type: 'text', text: content }] : content
  }
  if (content === undefined || content === null) return ''
  if (!Array.isArray(content)) return content
  const texts: string[] = []
  for (const p of content) {
    if (typeof p === 'string') texts.push(p)
    else if (typeof p === 'object' && p !== null) {
      const t = (p as Record<string, unknown>)['text']
      if (typeof t === 'string') texts.push(t)
    }
  }
  return texts.join('\n')
}

/** vLLM hands templates the arguments as an object, not the JSON string of the API. */
function toolCallValue(call: unknown): unknown {
  if (typeof call !== 'object' || call === null) return call
  const c = call as Record<string, unknown>
  const fn = c['function']
  if (typeof fn !== 'object' || fn === null) return call
  const f = fn as Record<string, unknown>
  const args = f['arguments']
  if (typeof args !== 'string') return call
  try {
    const parsed: unknown = JSON.parse(args)
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
      return { ...c, function: { ...f, arguments: parsed } }
  } catch {
    // Not JSON: vLLM leaves it as the string.
  }
  return call
}

function messageValue(m: Record<string, unknown>, format: ContentFormat): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(m)) {
    if (v === undefined) continue
    if (k === 'content') out[k] = contentValue(v, format)
    else if (k === 'tool_calls' && Array.isArray(v)) out[k] = v.map(toolCallValue)
    else out[k] = v
  }
  if (!('content' in out)) out['content'] = contentValue(undefined, format)
  return out
}

/** Compile `cfg` into a renderer. Throws on a template that does not parse. */
export function compileChatTemplate(
  TemplateClass: typeof Template,
  cfg: ChatTemplateConfig,
  onFirstError?: (message: string) => void,
): ChatTemplate {
  const tpl = new TemplateClass(cfg.source)
  const format = contentFormatOf(cfg.source)
  let renderErrors = 0
  let lastError: string | undefined
  return {
    get renderErrors() {
      return renderErrors
    },
    get lastError() {
      return lastError
    },
    render(body) {
      const messages = body['messages']
      if (!Array.isArray(messages)) return undefined
      try {
        const msgs: Record<string, unknown>[] = []
        for (const m of messages)
          if (typeof m === 'object' && m !== null)
            msgs.push(messageValue(m as Record<string, unknown>, format))
        const kwargs = body['chat_template_kwargs']
        const ctx: Record<string, unknown> = {
          // vLLM's request extension; the template's own arguments come last so they win.
          ...(typeof kwargs === 'object' && kwargs !== null && !Array.isArray(kwargs)
            ? (kwargs as Record<string, unknown>)
            : {}),
          ...cfg.specialTokens,
          messages: msgs,
          add_generation_prompt:
            typeof body['add_generation_prompt'] === 'boolean'
              ? body['add_generation_prompt']
              : true,
        }
        if (Array.isArray(body['tools']) && body['tools'].length > 0) ctx['tools'] = body['tools']
        return tpl.render(ctx)
      } catch (e) {
        renderErrors++
        lastError = (e as Error).message
        if (renderErrors === 1) onFirstError?.(lastError)
        return undefined
      }
    },
  }
}

/** Outcome of looking for a chat template beside a tokenizer.json. Never throws. */
export type ChatTemplateLoad =
  | { readonly template: ChatTemplate }
  | { readonly template: undefined; readonly error?: string }

/**
 * The chat template of the `tokenizer_config.json` beside `tokenizerJson`. No config or no
 * `chat_template` in it: no template (the ChatML-shaped prompt is used). A config or template that
 * does not parse: no template either, with `error` saying why.
 */
export async function loadChatTemplate(
  tokenizerJson: string,
  onFirstRenderError?: (message: string) => void,
): Promise<ChatTemplateLoad> {
  const file = join(dirname(tokenizerJson), 'tokenizer_config.json')
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { template: undefined }
    return { template: undefined, error: `${file}: ${(e as Error).message}` }
  }
  try {
    const cfg = chatTemplateConfig(JSON.parse(text))
    if (cfg === undefined) return { template: undefined }
    const { Template } = await import('@huggingface/jinja')
    return { template: compileChatTemplate(Template, cfg, onFirstRenderError) }
  } catch (e) {
    return { template: undefined, error: `${file}: ${(e as Error).message}` }
  }
}
