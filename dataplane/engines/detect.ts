// Which engine serves a pod, read from its Prometheus text: an InferencePool with no
// `infer-gateway.io/engine` label or annotation says nothing about its model servers, and reading
// vLLM's metric names off an SGLang pod leaves the scheduler blind (every load signal absent).
// The metric-name prefixes are the engines' own: `vllm:`, `sglang:`, `tgi_`. TensorRT-LLM serves
// its Prometheus text on another path (/prometheus/metrics), so it is never seen here: name it.
import type { InferenceEngine } from '../../api/snapshot.js'
import type { ParsedMetrics } from './prom-parser.js'

const PREFIXES: readonly (readonly [string, InferenceEngine])[] = [
  ['vllm:', 'vLLM'],
  ['sglang:', 'SGLang'],
  ['tgi_', 'TGI'],
]

/**
 * The engine whose metric families the scrape holds most of; undefined when none of the three
 * shows (a generic server, or an engine still starting with no families registered yet).
 */
export function detectEngine(parsed: ParsedMetrics): InferenceEngine | undefined {
  const counts = new Map<InferenceEngine, number>()
  for (const name of parsed.families.keys()) {
    for (const [prefix, engine] of PREFIXES) {
      if (name.startsWith(prefix)) counts.set(engine, (counts.get(engine) ?? 0) + 1)
    }
  }
  let best: InferenceEngine | undefined
  let most = 0
  for (const [engine, n] of counts) {
    if (n > most) {
      best = engine
      most = n
    }
  }
  return best
}
