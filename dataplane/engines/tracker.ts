// Per-endpoint glue: parse one scrape, run the engine's adapter with the previous scrape's state,
// keep the new state. The scraper holds one tracker per endpoint and drops it when the endpoint
// leaves the snapshot. A pod restarted in place (same address) is noticed here (restart.ts): the
// result says so, and the interval state starts over instead of mixing two processes' totals.

import type { InferenceEngine } from '../../api/snapshot.js'
import { adapterFor, type GenericMapping } from './adapters/index.js'
import { detectEngine } from './detect.js'
import { type ParsedMetrics, type ParseOptions, parsePrometheusText } from './prom-parser.js'
import {
  fingerprint,
  type ProcessFingerprint,
  type RestartSignal,
  restartBetween,
} from './restart.js'
import type { AdapterState, EngineAdapter, EngineMetrics } from './view.js'

export interface EngineMetricsTrackerOptions {
  readonly generic?: GenericMapping
  readonly parse?: ParseOptions
  /**
   * The engine was assumed, not named (an InferencePool without the engine label): each scrape's
   * metric names (detect.ts) may switch the adapter to the engine actually serving.
   */
  readonly detect?: boolean
}

export interface IngestResult {
  readonly metrics: EngineMetrics
  /** The parse result, for its error records and counts. */
  readonly parsed: ParsedMetrics
  /** Set when this scrape shows the engine process restarted since the previous one. */
  readonly restart?: RestartSignal
}

export class EngineMetricsTracker {
  #adapter: EngineAdapter
  readonly #detect: boolean
  readonly #parse: ParseOptions
  #state: AdapterState | undefined
  #process: ProcessFingerprint | undefined
  /** The last body ingestText parsed and what it made of it. */
  #lastText: string | undefined
  #last: IngestResult | undefined

  constructor(engine: InferenceEngine, options: EngineMetricsTrackerOptions = {}) {
    this.#adapter = adapterFor(engine, options.generic)
    this.#detect = options.detect === true
    // Histogram buckets are skipped: no adapter and no restart check reads them (prom-parser.ts).
    this.#parse = { histogramBuckets: false, ...options.parse }
  }

  get adapter(): EngineAdapter {
    return this.#adapter
  }

  /** The engine whose metrics are read: the configured one, or the detected one (`detect`). */
  get engine(): InferenceEngine {
    return this.#adapter.engine
  }

  /** Path the scraper should GET on the endpoint. */
  get metricsPath(): string {
    return this.#adapter.metricsPath
  }

  /**
   * Parses one exposition body and folds it into the interval state. A body equal to the previous
   * one (an idle engine's, scrape after scrape) gives the previous result again without a parse:
   * the same totals make the same view (intervalRatio keeps the last value when nothing moved),
   * the same fingerprint no restart, and the same names the same detected engine.
   */
  ingestText(text: string): IngestResult {
    const last = this.#last
    if (last !== undefined && text === this.#lastText) {
      return last.restart === undefined ? last : { metrics: last.metrics, parsed: last.parsed }
    }
    const result = this.#ingestText(text)
    this.#lastText = text
    this.#last = result
    return result
  }

  #ingestText(text: string): IngestResult {
    const parsed = parsePrometheusText(text, this.#parse)
    if (this.#detect) {
      const seen = detectEngine(parsed)
      if (seen !== undefined && seen !== this.#adapter.engine) {
        // Interval state is per adapter: the new one starts from this scrape.
        this.#adapter = adapterFor(seen)
        this.#state = undefined
      }
    }
    const process = fingerprint(parsed)
    const restart = restartBetween(this.#process, process)
    this.#process = process
    // Interval means across a restart would mix two processes: start over from this scrape.
    if (restart !== undefined) this.#state = undefined
    const metrics = this.#extract(parsed)
    return restart !== undefined ? { metrics, parsed, restart } : { metrics, parsed }
  }

  ingest(parsed: ParsedMetrics): EngineMetrics {
    // The interval state moves on without a text: the next text is news whatever it says.
    this.#forgetText()
    return this.#extract(parsed)
  }

  #extract(parsed: ParsedMetrics): EngineMetrics {
    const { metrics, state } = this.#adapter.extract(parsed, this.#state)
    this.#state = state
    return metrics
  }

  /** Forget the previous scrape: the next one reports cumulative means again. */
  reset(): void {
    this.#state = undefined
    this.#process = undefined
    this.#forgetText()
  }

  #forgetText(): void {
    this.#lastText = undefined
    this.#last = undefined
  }
}
