// Token usage as every adapter reports it, and the cost estimate from the provider's configured
// prices. Costs are estimates: providers bill by their own rounding, tiers and discounts.
import type { SnapshotPricing } from '../../api/snapshot.js'

export interface ProviderUsage {
  /** Every input token, cached ones included (OpenAI's prompt_tokens). */
  readonly promptTokens: number
  /** Every output token, reasoning included (what the provider bills as output). */
  readonly completionTokens: number
  /** Input tokens served from the provider's prompt cache (part of promptTokens). */
  readonly cachedPromptTokens?: number
  /** Output tokens spent on hidden reasoning (part of completionTokens). */
  readonly reasoningTokens?: number
}

/** Estimated cost in the pricing's currency. */
export function estimateCost(usage: ProviderUsage, pricing: SnapshotPricing): number {
  const cached = Math.min(usage.cachedPromptTokens ?? 0, usage.promptTokens)
  const cachedPrice = pricing.cachedInputPerMillion ?? pricing.inputPerMillion
  const micro =
    (usage.promptTokens - cached) * pricing.inputPerMillion +
    cached * cachedPrice +
    usage.completionTokens * pricing.outputPerMillion
  return micro / 1_000_000
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined
}

/**
 * OpenAI-style `usage` (OpenAI, Azure, DeepSeek, TGI, vLLM-style servers). DeepSeek reports its
 * cache hits as `prompt_cache_hit_tokens` instead of `prompt_tokens_details.cached_tokens`.
 */
export function openAIUsage(u: unknown): ProviderUsage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const r = u as Record<string, unknown>
  // Chat/completions name them prompt/completion tokens; the Responses API input/output tokens.
  const chat = r['prompt_tokens'] !== undefined
  const prompt = num(chat ? r['prompt_tokens'] : r['input_tokens'])
  if (prompt === undefined) return undefined
  const details = r[chat ? 'prompt_tokens_details' : 'input_tokens_details']
  const cached =
    (typeof details === 'object' && details !== null
      ? num((details as Record<string, unknown>)['cached_tokens'])
      : undefined) ?? num(r['prompt_cache_hit_tokens'])
  const out = r[chat ? 'completion_tokens_details' : 'output_tokens_details']
  const reasoning =
    typeof out === 'object' && out !== null
      ? num((out as Record<string, unknown>)['reasoning_tokens'])
      : undefined
  return {
    promptTokens: prompt,
    completionTokens: num(r[chat ? 'completion_tokens' : 'output_tokens']) ?? 0,
    ...(cached !== undefined && cached > 0 ? { cachedPromptTokens: cached } : {}),
    ...(reasoning !== undefined && reasoning > 0 ? { reasoningTokens: reasoning } : {}),
  }
}

/** OpenAI's `usage` object for translated responses. */
export function toOpenAIUsage(u: ProviderUsage): Record<string, unknown> {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    ...(u.cachedPromptTokens !== undefined
      ? { prompt_tokens_details: { cached_tokens: u.cachedPromptTokens } }
      : {}),
    ...(u.reasoningTokens !== undefined
      ? { completion_tokens_details: { reasoning_tokens: u.reasoningTokens } }
      : {}),
  }
}
