// Public surface of the provider side: the runtime the app holds (connection pools and the
// credential lookup). Serving a provider target is dataplane/serve/provider-target.ts.
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import { ProviderCredentials, type RefreshableSecrets } from './credentials.js'
import { ProviderTransport } from './transport.js'

export { adapterFor } from './registry.js'
export type { ProviderAdapter, ProviderApi } from './types.js'

export interface ProviderRuntimeOptions {
  /** Where provider keys are looked up (the data plane's SecretStore); absent = none configured. */
  readonly secrets?: RefreshableSecrets
  readonly log?: Logger
}

/** One per data plane: pooled provider connections and the credential lookup. */
export class ProviderRuntime {
  readonly transport = new ProviderTransport()
  readonly credentials: ProviderCredentials

  constructor(opts: ProviderRuntimeOptions = {}) {
    this.credentials = new ProviderCredentials(opts.secrets, opts.log ?? silentLogger)
  }

  close(): Promise<void> {
    return this.transport.close()
  }
}
