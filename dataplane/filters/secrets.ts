// Secret material for the filters, read from files: one file per entry, the way kubelet mounts a
// Kubernetes Secret (`<dir>/<key>` symlinks into a `..data` directory it swaps atomically on
// update). Standalone, `--secrets-dir` points at such a directory. Entries are re-read on fs events
// and on a poll, so a rotated key or a revoked API key takes effect without a restart.
//
// Values stay in this process's memory only: they are never logged (only entry names and
// counts), never put into snapshots, metrics or error messages.
import { createHash } from 'node:crypto'
import { type FSWatcher, watch } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.js'

export interface SecretLookup {
  /** The entry's value (one trailing newline removed), or undefined when there is no such entry. */
  get(key: string): string | undefined
}

export interface SecretStoreOptions {
  /** Directory of entries; undefined = no secrets (every lookup misses). */
  readonly dir?: string
  readonly log: Logger
  /** Re-read interval (fs events trigger an immediate check too). Default 1000 ms. */
  readonly pollMs?: number
}

/** Entries above this are not secrets we understand (keys, hashes, passwords); skipped. */
const MAX_ENTRY_BYTES = 64 * 1024

export class SecretStore implements SecretLookup {
  private readonly opts: SecretStoreOptions
  private values = new Map<string, string>()
  private digest = ''
  private timer: NodeJS.Timeout | undefined
  private watcher: FSWatcher | undefined
  private readonly listeners = new Set<() => void>()
  private running: Promise<boolean> | undefined
  /** The read that starts once the running one ends, shared by every caller meanwhile. */
  private queued: Promise<boolean> | undefined
  /** Bumped on every change of content. */
  revision = 0

  constructor(opts: SecretStoreOptions) {
    this.opts = opts
  }

  get(key: string): string | undefined {
    return this.values.get(key)
  }

  get size(): number {
    return this.values.size
  }

  /** Reads once and starts watching. A missing directory is an error: the operator mounts it. */
  async start(): Promise<void> {
    const dir = this.opts.dir
    if (dir === undefined) return
    const s = await stat(dir)
    if (!s.isDirectory()) throw new Error(`secrets dir ${dir} is not a directory`)
    await this.refresh()
    try {
      this.watcher = watch(dir, { persistent: false }, () => {
        void this.refresh()
      })
      this.watcher.on('error', () => {})
    } catch {
      // The poll still covers it.
    }
    this.timer = setInterval(() => void this.refresh(), this.opts.pollMs ?? 1000)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.watcher?.close()
    this.watcher = undefined
  }

  /** Called after every change of content (not on start). */
  onChange(cb: () => void): () => void {
    this.listeners.add(cb)
    return () => this.listeners.delete(cb)
  }

  /** Re-reads the directory now; resolves true when the content changed. */
  refresh(): Promise<boolean> {
    if (this.running === undefined) {
      this.running = this.read().finally(() => {
        this.running = undefined
      })
      return this.running
    }
    // The read under way may have listed the files before the change this caller knows of (a
    // provider already rejecting the old key): it waits for a read that starts after now.
    this.queued ??= this.running.then(() => {
      this.queued = undefined
      return this.refresh()
    })
    return this.queued
  }

  private async read(): Promise<boolean> {
    const dir = this.opts.dir
    if (dir === undefined) return false
    const next = new Map<string, string>()
    try {
      const names = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort()
      for (const name of names) {
        const path = join(dir, name)
        try {
          // stat follows kubelet's symlinks to the file in the current `..data` directory.
          const s = await stat(path)
          if (!s.isFile()) continue
          if (s.size > MAX_ENTRY_BYTES) {
            this.opts.log('warn', 'secret entry too large; ignored', { entry: name, bytes: s.size })
            continue
          }
          next.set(name, (await readFile(path, 'utf8')).replace(/\r?\n$/, ''))
        } catch {
          // Vanished between readdir and read (mid-swap): the next poll sees the new state.
        }
      }
    } catch (e) {
      this.opts.log('error', 'cannot read secrets dir; keeping the entries read before', {
        dir,
        error: e instanceof Error ? e.message : String(e),
      })
      return false
    }
    const h = createHash('sha256')
    for (const [k, v] of next) h.update(k).update('\0').update(v).update('\0')
    const digest = h.digest('hex')
    if (digest === this.digest) return false
    const first = this.digest === ''
    this.digest = digest
    this.values = next
    this.revision++
    this.opts.log('info', first ? 'secrets loaded' : 'secrets changed', { entries: next.size })
    if (!first) for (const l of this.listeners) l()
    return true
  }
}

/** A fixed set of entries (embedding and unit tests). */
export function staticSecrets(entries: Readonly<Record<string, string>>): SecretLookup {
  const m = new Map(Object.entries(entries))
  return { get: (k) => m.get(k) }
}
