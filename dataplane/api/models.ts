// The model list clients see (`GET /v1/models`, `GET /v1/models/{id}`) in OpenAI's shape. `created`
// is when the model first appeared in configuration: the creationTimestamp of the route that
// exposes it when the snapshot has one (the API server sets it on a cluster; standalone YAML may
// set `metadata.creationTimestamp`), otherwise the first time this process saw the model in a
// snapshot — kept across reloads, so a client caching the list sees a stable value.
import type { PublicModel, RouteTable } from '../router.js'

export interface OpenAIModel {
  readonly id: string
  readonly object: 'model'
  readonly created: number
  readonly owned_by: string
}

export class ModelCatalog {
  readonly #firstSeen = new Map<string, number>()
  #table: RouteTable | undefined
  #byId = new Map<string, { model: OpenAIModel; route: string }>()
  readonly #now: () => number

  /** `now`: Unix seconds (injectable for tests). */
  constructor(now: () => number = () => Math.floor(Date.now() / 1000)) {
    this.#now = now
  }

  /** Every model the table exposes, sorted by id, with the routes they come from. */
  list(table: RouteTable): readonly { readonly model: OpenAIModel; readonly route: string }[] {
    this.#refresh(table)
    return [...this.#byId.values()]
  }

  /** One model, or undefined when no route exposes it. */
  find(table: RouteTable, id: string): { model: OpenAIModel; route: string } | undefined {
    this.#refresh(table)
    return this.#byId.get(id)
  }

  #refresh(table: RouteTable): void {
    if (table === this.#table) return
    this.#table = table
    const now = this.#now()
    const byId = new Map<string, { model: OpenAIModel; route: string }>()
    for (const m of table.models) {
      // Seen once, kept: a model that leaves and comes back keeps its first time too.
      if (!this.#firstSeen.has(m.id)) this.#firstSeen.set(m.id, now)
      byId.set(m.id, { model: this.#entry(m), route: m.route })
    }
    this.#byId = byId
  }

  #entry(m: PublicModel): OpenAIModel {
    const created = m.created > 0 ? m.created : (this.#firstSeen.get(m.id) ?? this.#now())
    return { id: m.id, object: 'model', created, owned_by: 'infer-gateway' }
  }
}
