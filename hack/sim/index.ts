// Public surface of the engine simulator (used by tests, the proxy benchmark and the CLI).

export { parseSimArgs, runSimCommand, type SimCommandIo, simHelp } from './command.js'
export type { EngineConfig, EngineGauges, FinishReason, GenerationResult } from './engine.js'
export { Engine } from './engine.js'
export { SimError, type SimErrorBody } from './errors.js'
export { blockHashes, type KvAllocation, KvCache, type KvCacheStats } from './kv-cache.js'
export { LoraSlots } from './lora.js'
export { METRICS_FORMATS, type MetricsFormat, SimMetrics } from './metrics.js'
export { BOOTSTRAP_WAIT_MS, type PdCounters, SIM_ROLES, type SimRole } from './pd.js'
export { generateWords, pseudoEmbedding } from './rng.js'
export {
  type Fleet,
  resolveOptions,
  type SimFailures,
  type SimHandle,
  type SimOptions,
  type SimStats,
  startFleet,
  startSimulator,
} from './server.js'
export { applyChatTemplate, type ChatMessageLike, countTokens, tokenize } from './tokenizer.js'
