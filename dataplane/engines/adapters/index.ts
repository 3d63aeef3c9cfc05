// One adapter per engine kind of the routing snapshot.

import type { InferenceEngine } from '../../../api/snapshot.js'
import type { EngineAdapter } from '../view.js'
import { type GenericMapping, genericAdapter } from './generic.js'
import { sglangAdapter } from './sglang.js'
import { tgiAdapter } from './tgi.js'
import { trtllmAdapter } from './trtllm.js'
import { vllmAdapter } from './vllm.js'

export type { GenericMapping } from './generic.js'
export { genericAdapter } from './generic.js'
export { sglangAdapter } from './sglang.js'
export { tgiAdapter } from './tgi.js'
export { trtllmAdapter } from './trtllm.js'
export { vllmAdapter, vllmLoraInfo } from './vllm.js'

/** The adapter for `engine`; `generic` is read only for 'Generic' (no mapping: every signal absent). */
export function adapterFor(engine: InferenceEngine, generic?: GenericMapping): EngineAdapter {
  switch (engine) {
    case 'vLLM':
      return vllmAdapter
    case 'SGLang':
      return sglangAdapter
    case 'TGI':
      return tgiAdapter
    case 'TensorRT-LLM':
      return trtllmAdapter
    case 'Generic':
      return genericAdapter(generic)
  }
}
