// Per-endpoint glue: parse one scrape, run the engine's adapter with the previous scrape's state,
// keep the new state. The scraper (a later issue) holds one tracker per endpoint and drops it when
// the endpoint leaves the snapshot; a restarted pod is handled by counter-reset detection.

import type { InferenceEngine } from '../../api/snapshot.js'
import { adapterFor, type GenericMapping } from './adapters/index.js'
import { type ParsedMetrics, type ParseOptions, parsePrometheusText } from './prom-parser.js'
import type { AdapterState, EngineAdapter, EngineMetrics } from './view.js'

export interface EngineMetricsTrackerOptions {
  readonly generic?: GenericMapping
  readonly parse?: ParseOptions
}

export interface IngestResult {
  readonly metrics: EngineMetrics
  /** The parse result, for its error records and counts. */
  readonly parsed: ParsedMetrics
}

export class EngineMetricsTracker {
  readonly adapter: EngineAdapter
  readonly #parse: ParseOptions
  #state: AdapterState | undefined

  constructor(engine: InferenceEngine, options: EngineMetricsTrackerOptions = {}) {
    this.adapter = adapterFor(engine, options.generic)
    this.#parse = options.parse ?? {}
  }

  /** Path the scraper should GET on the endpoint. */
  get metricsPath(): string {
    return this.adapter.metricsPath
  }

  /** Parses one exposition body and folds it into the interval state. */
  ingestText(text: string): IngestResult {
    const parsed = parsePrometheusText(text, this.#parse)
    return { metrics: this.ingest(parsed), parsed }
  }

  ingest(parsed: ParsedMetrics): EngineMetrics {
    const { metrics, state } = this.adapter.extract(parsed, this.#state)
    this.#state = state
    return metrics
  }

  /** Forget the previous scrape: the next one reports cumulative means again. */
  reset(): void {
    this.#state = undefined
  }
}
