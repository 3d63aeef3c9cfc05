// Provider simulators on loopback (tests and demos; never the real internet).
export { startAnthropicSim } from './anthropic.js'
export { countTokens, type RecordedRequest, type SimControls, type SimServer } from './common.js'
export { startGeminiSim } from './gemini.js'
export { type OpenAIFlavor, startOpenAISim } from './openai.js'
