// Public API of the engine-metrics layer: parse an engine's /metrics text and turn it into the
// engine-neutral EngineMetrics view the scheduler reads.

export type { GenericMapping } from './adapters/index.js'
export {
  adapterFor,
  genericAdapter,
  sglangAdapter,
  tgiAdapter,
  trtllmAdapter,
  vllmAdapter,
  vllmLoraInfo,
} from './adapters/index.js'
export type {
  MetricFamily,
  MetricType,
  ParsedMetrics,
  ParseOptions,
  PromParseError,
  PromParseErrorCode,
  Sample,
} from './prom-parser.js'
export { DEFAULT_MAX_ERRORS, DEFAULT_MAX_LENGTH, parsePrometheusText } from './prom-parser.js'
export type { EngineMetricsTrackerOptions, IngestResult } from './tracker.js'
export { EngineMetricsTracker } from './tracker.js'
export type {
  AdapterState,
  CumulativePair,
  EngineAdapter,
  EngineMetrics,
  ExtractResult,
  LoraInfo,
  MetricParts,
  RequiredSignal,
} from './view.js'
export { assembleMetrics, IntervalWindow, intervalRatio } from './view.js'
