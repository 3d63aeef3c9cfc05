import { describe, expect, it } from 'vitest'
import { estimateCost, openAIUsage, toOpenAIUsage } from './usage.js'

describe('usage', () => {
  it('reads OpenAI usage with cached and reasoning details, and DeepSeek cache hits', () => {
    expect(
      openAIUsage({
        prompt_tokens: 10,
        completion_tokens: 5,
        prompt_tokens_details: { cached_tokens: 4 },
        completion_tokens_details: { reasoning_tokens: 2 },
      }),
    ).toEqual({ promptTokens: 10, completionTokens: 5, cachedPromptTokens: 4, reasoningTokens: 2 })
    expect(
      openAIUsage({ prompt_tokens: 8, completion_tokens: 1, prompt_cache_hit_tokens: 6 }),
    ).toEqual({
      promptTokens: 8,
      completionTokens: 1,
      cachedPromptTokens: 6,
    })
    expect(openAIUsage(null)).toBeUndefined()
    expect(openAIUsage({ completion_tokens: 1 })).toBeUndefined()
  })

  it('prices cached input apart, defaulting to the input price', () => {
    const u = { promptTokens: 1_000_000, completionTokens: 500_000, cachedPromptTokens: 400_000 }
    expect(
      estimateCost(u, {
        inputPerMillion: 3,
        outputPerMillion: 15,
        cachedInputPerMillion: 0.3,
        currency: 'USD',
      }),
    ).toBeCloseTo(0.6 * 3 + 0.4 * 0.3 + 0.5 * 15, 9)
    expect(
      estimateCost(u, { inputPerMillion: 3, outputPerMillion: 15, currency: 'USD' }),
    ).toBeCloseTo(3 + 7.5, 9)
  })

  it('writes OpenAI usage objects', () => {
    expect(toOpenAIUsage({ promptTokens: 3, completionTokens: 2, cachedPromptTokens: 1 })).toEqual({
      prompt_tokens: 3,
      completion_tokens: 2,
      total_tokens: 5,
      prompt_tokens_details: { cached_tokens: 1 },
    })
  })
})
