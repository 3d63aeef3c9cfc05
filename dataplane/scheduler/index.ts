// Public surface of the model-aware scheduler (see README.md in this folder).

export { DEFAULT_PROFILE, PLUGINS } from './profile.js'
export { blockHashes, flattenPrompt, rendezvous } from './prompt.js'
export {
  type PeerDispatch,
  Scheduler,
  type SchedulerOptions,
  type ScrapeOptions,
  scrapeTargetsOf,
} from './scheduler.js'
export { EndpointState, type HealthOptions } from './state.js'
export type { Plugin, PluginArgs, PluginEnv, SchedRequest } from './types.js'
