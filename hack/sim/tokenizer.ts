// A deterministic stand-in tokenizer: one token per word (letters/digits/underscore run) or per
// punctuation character, each carrying the whitespace before it. It is not BPE, but it is stable,
// fast and reversible (joining the tokens gives the text back minus trailing whitespace), which is
// what prefix hashing and token accounting need. The gateway may reuse it for estimates.

import { WORD_TOKEN_RE } from '../../dataplane/kv-events/tokens.js'

// The expression lives with the data plane's `words` tokenizer, which must cut text exactly so.
const TOKEN_RE = WORD_TOKEN_RE

export function tokenize(text: string): string[] {
  return text.match(TOKEN_RE) ?? []
}

export function countTokens(text: string): number {
  let n = 0
  TOKEN_RE.lastIndex = 0
  while (TOKEN_RE.exec(text) !== null) n++
  return n
}

export interface ChatMessageLike {
  role: string
  content: string
}

/**
 * ChatML-style template (Qwen/vLLM default shape). The generation prompt for the assistant turn
 * is appended, as vLLM does with `add_generation_prompt=True`, so that the flattened prompt of a
 * conversation is a prefix of the next turn's prompt: that is what makes multi-turn prefix caching work.
 */
export function applyChatTemplate(messages: readonly ChatMessageLike[]): string {
  let out = ''
  for (const m of messages) out += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`
  return `${out}<|im_start|>assistant\n`
}
