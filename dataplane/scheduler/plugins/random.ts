// random: a uniformly random score per endpoint. Alone, it is the random-placement baseline of the
// routing benchmark; mixed in with a small weight, it breaks ties without a fixed bias.

import type { EndpointState } from '../state.js'
import type { Plugin, PluginEnv, SchedRequest } from '../types.js'

export function randomPlugin(_args: unknown, env: PluginEnv): Plugin {
  return {
    name: 'random',
    // One candidate: its draw is still taken, so that the draws of later decisions stay the same.
    single(): void {
      env.random()
    },
    score(_req: SchedRequest, eps: readonly EndpointState[], out: Float64Array): boolean {
      for (let i = 0; i < eps.length; i++) out[i] = env.random()
      return true
    },
  }
}
