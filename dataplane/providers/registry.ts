// providerType → adapter. The OpenAI-compatible family shares one adapter (they differ in URL,
// APIs and auth header only); Anthropic and Gemini translate.
import type { ProviderType } from '../../api/snapshot.js'
import { anthropicAdapter } from './anthropic/adapter.js'
import { geminiAdapter } from './gemini/adapter.js'
import { openAIAdapter } from './openai/adapter.js'
import type { ProviderAdapter } from './types.js'

const ADAPTERS: Readonly<Record<ProviderType, ProviderAdapter>> = {
  OpenAI: openAIAdapter,
  AzureOpenAI: openAIAdapter,
  DeepSeek: openAIAdapter,
  HuggingFace: openAIAdapter,
  OpenAICompatible: openAIAdapter,
  Anthropic: anthropicAdapter,
  Gemini: geminiAdapter,
}

export function adapterFor(type: ProviderType): ProviderAdapter {
  return ADAPTERS[type]
}
