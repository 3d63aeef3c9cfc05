// Standalone configuration from files, hot-reloaded. Either CRD manifests (ModelRoute/ModelServer
// plus StaticEndpoints, compiled here with the operator's compiler) or a compiled snapshot (what the
// operator publishes; JSON, optionally gzipped). Files are re-read on fs events and on a short poll,
// because kubelet updates ConfigMap volumes by swapping a `..data` symlink, which plain watches on
// the file itself miss. A bad file never replaces the live config: the error names file, line and
// field, and a metric counts it.
//
// Editors and shells do not write atomically (`>` truncates, then writes), so two more guards:
// - a file is read between two stats; if it changed meanwhile (size, mtime, inode, or a length
//   that disagrees with the stat), the round is skipped and retried shortly;
// - while a live config exists, a file modified less than `settleMs` (200 ms) ago is not read yet:
//   a writer that pauses between pieces leaves a prefix that can be valid YAML (a cut
//   `modelName: lla` is still a string), which no stat comparison can tell from the finished file;
// - a file with no documents (empty, or only comments) is refused, as the moment between the
//   truncation and the write looks exactly like that, unless `allowEmpty` says an empty config
//   is intended. Either way the last good config stays live.
import { createHash } from 'node:crypto'
import { type FSWatcher, watch } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { isScalar, parseAllDocuments } from 'yaml'
import { compileSnapshot, parseManifests, validateSnapshot } from '../api/index.js'
import type { RoutingSnapshot } from '../api/snapshot.js'
import type { Logger } from './log.js'
import type { GatewayMetrics } from './metrics.js'
import type { SnapshotStore } from './snapshot-store.js'

export type ConfigKind = 'manifests' | 'snapshot'

export interface ConfigSourceOptions {
  readonly kind: ConfigKind
  /** Files or directories (directories: every *.yaml|*.yml|*.json inside, dotfiles skipped). */
  readonly paths: readonly string[]
  readonly store: SnapshotStore
  readonly metrics: GatewayMetrics
  readonly log: Logger
  /** Poll interval; fs events trigger an immediate check as well. Default 500 ms. */
  readonly pollMs?: number
  /** A file modified more recently than this is re-read later, not now (default 200 ms). */
  readonly settleMs?: number
  /** Accept files with no documents (default: refused, see above). */
  readonly allowEmpty?: boolean
  /** Compile option: provider baseURLs on loopback/link-local addresses (api/compile.ts). */
  readonly allowPrivateProviderAddresses?: boolean
}

export interface ReloadProblem {
  readonly file: string
  readonly line?: number
  readonly column?: number
  readonly path?: string
  readonly message: string
}

export class ConfigLoadError extends Error {
  override readonly name = 'ConfigLoadError'
  readonly code = 'CONFIG_INVALID'
  readonly problems: readonly ReloadProblem[]
  constructor(problems: readonly ReloadProblem[]) {
    super(problems.map(formatProblem).join('; '))
    this.problems = problems
  }
}

export function formatProblem(p: ReloadProblem): string {
  const loc =
    p.line !== undefined
      ? `${p.file}:${p.line}${p.column !== undefined ? `:${p.column}` : ''}`
      : p.file
  return `${loc}: ${p.path ? `${p.path}: ` : ''}${p.message}`
}

interface FileContent {
  readonly name: string
  readonly data: Buffer
}

function isNotFound(e: unknown): boolean {
  return (
    typeof e === 'object' && e !== null && 'code' in e && (e as { code: unknown }).code === 'ENOENT'
  )
}

/** Thrown when a file changed while it was read: not an error, the round is retried. */
export class FileChangedError extends Error {
  override readonly name = 'FileChangedError'
  readonly code = 'CONFIG_FILE_CHANGED'
}

/**
 * Reads `name` between two stats and throws FileChangedError when it changed meanwhile.
 * `between` runs after the read (tests use it to change the file at exactly that moment).
 */
export async function readFileStable(
  name: string,
  between?: () => Promise<void>,
  settleMs = 0,
): Promise<Buffer> {
  const before = await stat(name)
  const data = await readFile(name)
  if (between) await between()
  const after = await stat(name)
  if (
    before.ino !== after.ino ||
    before.size !== after.size ||
    before.mtimeMs !== after.mtimeMs ||
    data.length !== after.size
  ) {
    throw new FileChangedError(`${name} changed while it was read`)
  }
  // A modification time in the future (clock skew, preserved times) counts as settled.
  const age = Date.now() - after.mtimeMs
  if (settleMs > 0 && age >= 0 && age < settleMs) {
    throw new FileChangedError(
      `${name} was modified ${Math.round(age)} ms ago; waiting for the writer`,
    )
  }
  return data
}

/** YAML documents with content (an empty stream, `---` separators and comments count none). */
export function documentCount(text: string): number {
  const docs = parseAllDocuments(text)
  if (!Array.isArray(docs)) return 0
  return docs.filter(
    (d) =>
      d.errors.length > 0 ||
      (d.contents !== null && !(isScalar(d.contents) && d.contents.value === null)),
  ).length
}

/** Every file read stably; a few quick retries so a start during a write does not fail. */
async function readAllStable(names: readonly string[], settleMs: number): Promise<FileContent[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await Promise.all(
        names.map(async (name) => ({
          name,
          data: await readFileStable(name, undefined, settleMs),
        })),
      )
    } catch (e) {
      if (!(e instanceof FileChangedError) || attempt >= 4) throw e
      await new Promise((r) => setTimeout(r, 25 * attempt))
    }
  }
}

/**
 * Whether an fs event for `filename` in watched directory `dir` can concern the config. The
 * directory of a config file may hold other files that change all the time (logs, a benchmark's
 * results): re-reading the config on each of their writes cost a busy gateway about half a core.
 * Kept: the config files themselves, any YAML/JSON of a watched directory, kubelet's `..data`
 * swap entries, and events without a name (some platforms omit it).
 */
export function watchEventMatters(
  paths: readonly string[],
  dir: string,
  filename: string | Buffer | null,
): boolean {
  if (filename === null) return true
  const name = filename.toString()
  if (name.startsWith('..')) return true
  for (const p of paths) {
    if (p.match(/\.(ya?ml|json|gz)$/)) {
      if (dirname(p) === dir && basename(p) === name) return true
    } else if (p === dir && !name.startsWith('.') && /\.(ya?ml|json|gz)$/.test(name)) return true
  }
  return false
}

/** The files a --config path list names: directories expand to their YAML/JSON files, sorted. */
export async function listFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = []
  for (const p of paths) {
    const s = await stat(p)
    if (s.isDirectory()) {
      const names = (await readdir(p))
        .filter((n) => !n.startsWith('.') && /\.(ya?ml|json|gz)$/.test(n))
        .sort()
      for (const n of names) out.push(join(p, n))
    } else out.push(p)
  }
  return out
}

export class FileConfigSource {
  private readonly opts: ConfigSourceOptions
  private lastDigest: string | undefined
  private version = 0
  private timer: NodeJS.Timeout | undefined
  private watchers: FSWatcher[] = []
  private running: Promise<boolean> | undefined
  private again = false

  constructor(opts: ConfigSourceOptions) {
    this.opts = opts
  }

  /** Loads once (throws on an invalid initial config) and starts watching. */
  async start(): Promise<void> {
    const ok = await this.check()
    this.watch()
    // A published snapshot may not exist yet (optional ConfigMap mount before the operator's first
    // publish, or the push channel delivers first): serve not-ready and keep watching. Standalone
    // YAML that does not load is the user's error to see at once.
    if (!ok && !this.opts.store.snapshot && this.opts.kind === 'manifests') {
      throw new ConfigLoadError([
        { file: this.opts.paths.join(','), message: 'initial configuration is invalid (see log)' },
      ])
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    for (const w of this.watchers) w.close()
    this.watchers = []
  }

  /** Re-reads the files; resolves true when the live config is (now) the files' content. */
  check(): Promise<boolean> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = this.doCheck().finally(() => {
      this.running = undefined
      if (this.again) {
        this.again = false
        void this.check()
      }
    })
    return this.running
  }

  private retryTimer: NodeJS.Timeout | undefined

  private retrySoon(): void {
    if (this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      void this.check()
    }, 50)
    this.retryTimer.unref()
  }

  private watch(): void {
    const dirs = new Set<string>()
    for (const p of this.opts.paths) dirs.add(p.match(/\.(ya?ml|json|gz)$/) ? dirname(p) : p)
    for (const d of dirs) {
      try {
        const w = watch(d, { persistent: false }, (_event, filename) => {
          if (watchEventMatters(this.opts.paths, d, filename)) void this.check()
        })
        w.on('error', () => {})
        this.watchers.push(w)
      } catch {
        // Polling still covers this directory.
      }
    }
    this.timer = setInterval(() => void this.check(), this.opts.pollMs ?? 500)
    this.timer.unref()
  }

  private async doCheck(): Promise<boolean> {
    const { log, metrics } = this.opts
    let files: FileContent[]
    try {
      const names = await listFiles(this.opts.paths)
      // Settling only matters when there is a good config to keep serving meanwhile; at start the
      // file is read as it is (a broken one fails the start loudly).
      const settle = this.opts.store.snapshot !== undefined ? (this.opts.settleMs ?? 200) : 0
      files = await readAllStable(names, settle)
    } catch (e) {
      if (e instanceof FileChangedError) {
        // Mid-write: the writer's next fs event (or the poll) brings the finished file.
        log('info', 'config file changed while being read; re-reading', { error: e.message })
        this.retrySoon()
        return this.opts.store.snapshot !== undefined
      }
      // A file mid-swap can vanish for a moment; the next poll sees the new one.
      const msg = e instanceof Error ? e.message : String(e)
      if (this.opts.kind === 'snapshot' && isNotFound(e)) {
        if (this.lastDigest !== 'missing') {
          this.lastDigest = 'missing'
          log('info', 'snapshot file not there yet; waiting for it', { paths: this.opts.paths })
        }
        return false
      }
      if (this.lastDigest !== `read-error:${msg}`) {
        this.lastDigest = `read-error:${msg}`
        metrics.reloads.inc({ result: 'failure' })
        log('error', 'config read failed; keeping last good config', { error: msg })
      }
      return false
    }
    const h = createHash('sha256')
    for (const f of files) h.update(f.name).update('\0').update(f.data).update('\0')
    const digest = h.digest('hex')
    if (digest === this.lastDigest) return this.opts.store.snapshot !== undefined
    this.lastDigest = digest
    try {
      const snapshot =
        this.opts.kind === 'manifests' ? this.compile(files) : this.loadSnapshot(files)
      if (!snapshot) return true
      this.opts.store.swap(snapshot)
      metrics.reloads.inc({ result: 'success' })
      metrics.snapshotVersion.set(snapshot.version)
      metrics.lastReloadSuccess.set(Date.now() / 1000)
      log('info', 'config loaded', {
        version: snapshot.version,
        hash: snapshot.hash,
        routes: snapshot.routes.length,
        servers: Object.keys(snapshot.servers).length,
      })
      return true
    } catch (e) {
      metrics.reloads.inc({ result: 'failure' })
      const problems =
        e instanceof ConfigLoadError
          ? e.problems
          : [
              {
                file: files.map((f) => f.name).join(','),
                message: e instanceof Error ? e.message : String(e),
              },
            ]
      for (const p of problems) {
        log('error', `config rejected; keeping last good config: ${formatProblem(p)}`, { ...p })
      }
      return false
    }
  }

  private compile(files: readonly FileContent[]): RoutingSnapshot {
    if (!this.opts.allowEmpty) {
      const empty = files.filter((f) => documentCount(f.data.toString('utf8')) === 0)
      if (files.length === 0 || empty.length > 0) {
        throw new ConfigLoadError(
          (empty.length > 0 ? empty.map((f) => f.name) : [this.opts.paths.join(',')]).map(
            (file) => ({
              file,
              message:
                'no documents (empty or only comments): refused, as a file caught mid-write looks like this; pass --allow-empty-config if an empty config is intended',
            }),
          ),
        )
      }
    }
    const parsed = parseManifests(
      files.map((f) => ({ name: f.name, text: f.data.toString('utf8') })),
    )
    if (parsed.issues.length > 0) {
      throw new ConfigLoadError(
        parsed.issues.map((i) => ({
          file: i.file,
          line: i.line,
          column: i.column,
          path: i.path,
          message: i.message,
        })),
      )
    }
    const { snapshot, diagnostics } = compileSnapshot({
      routes: parsed.routes,
      servers: parsed.servers,
      endpoints: parsed.endpoints,
      policies: parsed.policies,
      providers: parsed.providers,
      inferencePools: parsed.inferencePools,
      objectives: parsed.objectives,
      httpRoutes: parsed.httpRoutes,
      version: this.version + 1,
      ...(this.opts.allowPrivateProviderAddresses ? { allowPrivateProviderAddresses: true } : {}),
    })
    // Standalone treats the files as one unit: a dangling reference is a typo to fix, not a
    // partial config to run with.
    const fatal = diagnostics.filter((d) => d.severity === 'error')
    if (fatal.length > 0) {
      throw new ConfigLoadError(
        fatal.map((d) => ({
          file: `${d.kind} ${d.key}`,
          ...(d.path ? { path: d.path } : {}),
          message: `${d.reason}: ${d.message}`,
        })),
      )
    }
    for (const d of diagnostics)
      this.opts.log('warn', `${d.kind} ${d.key}: ${d.reason}: ${d.message}`)
    this.version = snapshot.version
    return snapshot
  }

  private loadSnapshot(files: readonly FileContent[]): RoutingSnapshot | undefined {
    const file = files[0]
    if (!file || files.length !== 1) {
      throw new ConfigLoadError([
        {
          file: this.opts.paths.join(','),
          message: `expected exactly one snapshot file, found ${files.length}`,
        },
      ])
    }
    let data = file.data
    if (data[0] === 0x1f && data[1] === 0x8b) data = gunzipSync(data)
    let json: unknown
    try {
      json = JSON.parse(data.toString('utf8'))
    } catch (e) {
      throw new ConfigLoadError([
        {
          file: basename(file.name),
          message: `not valid JSON: ${e instanceof Error ? e.message : String(e)}`,
        },
      ])
    }
    let snapshot: RoutingSnapshot
    try {
      snapshot = validateSnapshot(json)
    } catch (e) {
      throw new ConfigLoadError([
        { file: file.name, message: e instanceof Error ? e.message : String(e) },
      ])
    }
    const current = this.opts.store.snapshot
    if (current && snapshot.version < current.version) {
      this.opts.log('warn', 'ignoring older snapshot version', {
        version: snapshot.version,
        current: current.version,
      })
      return undefined
    }
    // Same version: already live (the push channel may have delivered it first).
    if (current && snapshot.version === current.version) return undefined
    return snapshot
  }
}
