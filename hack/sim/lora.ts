// LoRA adapter slots, like vLLM's `--max-loras`: an adapter must sit in one of `maxLoras` GPU
// slots for its requests to run. Loading takes time; an idle adapter (no running request) can be
// evicted, least recently used first; an adapter with running requests cannot.

export type LoraAcquire = { kind: 'ready'; readyAt: number } | { kind: 'blocked' }

interface Slot {
  name: string
  refs: number
  lastUsed: number
  readyAt: number
}

export class LoraSlots {
  readonly maxLoras: number
  private readonly known: ReadonlySet<string>
  private readonly slots = new Map<string, Slot>()
  private tick = 0
  private loadCount = 0
  private evictCount = 0

  constructor(known: readonly string[], maxLoras: number) {
    this.known = new Set(known)
    this.maxLoras = maxLoras
  }

  isKnown(name: string): boolean {
    return this.known.has(name)
  }

  knownAdapters(): string[] {
    return [...this.known]
  }

  /**
   * Take a reference on `name`, loading it if needed. `now` and `loadMs` define when a fresh load
   * finishes; a request on an adapter still loading waits for the same load. Returns `blocked`
   * when every slot is held by an adapter with running requests.
   */
  acquire(name: string, now: number, loadMs: number): LoraAcquire {
    const slot = this.slots.get(name)
    if (slot !== undefined) {
      slot.refs++
      slot.lastUsed = ++this.tick
      return { kind: 'ready', readyAt: slot.readyAt }
    }
    if (this.slots.size >= this.maxLoras && !this.evictIdle()) return { kind: 'blocked' }
    const fresh: Slot = { name, refs: 1, lastUsed: ++this.tick, readyAt: now + loadMs }
    this.slots.set(name, fresh)
    this.loadCount++
    return { kind: 'ready', readyAt: fresh.readyAt }
  }

  /** Could `name` be acquired right now (loaded, free slot, or an idle adapter to evict)? */
  canAcquire(name: string): boolean {
    if (this.slots.has(name) || this.slots.size < this.maxLoras) return true
    for (const s of this.slots.values()) if (s.refs === 0) return true
    return false
  }

  release(name: string): void {
    const slot = this.slots.get(name)
    if (slot === undefined || slot.refs === 0) return
    slot.refs--
    slot.lastUsed = ++this.tick
  }

  private evictIdle(): boolean {
    let victim: Slot | undefined
    for (const s of this.slots.values()) {
      if (s.refs === 0 && (victim === undefined || s.lastUsed < victim.lastUsed)) victim = s
    }
    if (victim === undefined) return false
    this.slots.delete(victim.name)
    this.evictCount++
    return true
  }

  loaded(): string[] {
    return [...this.slots.keys()]
  }

  counters(): { loads: number; evictions: number } {
    return { loads: this.loadCount, evictions: this.evictCount }
  }
}
