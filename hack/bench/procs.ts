// Child processes for benchmarks: each part runs in its own process (as in production), so the
// gateway's event loop is not shared with the load generator or the engines.
import { type ChildProcess, spawn } from 'node:child_process'
import { basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DATAPLANE_NODE_ARGS } from '../../cdk8s/dataplane-node.js'

export const CLI = fileURLToPath(new URL('../../bin/infer-gateway.js', import.meta.url))

export interface Proc {
  readonly child: ChildProcess
  stop(): Promise<void>
}

/** The child did not print its ready line in time; it has been told to stop (`pid`). */
export class SpawnTimeoutError extends Error {
  override readonly name = 'SpawnTimeoutError'
  readonly code = 'SPAWN_TIMEOUT'
  readonly pid: number | undefined
  constructor(pid: number | undefined, message: string) {
    super(message)
    this.pid = pid
  }
}

export interface CliProc extends Proc {
  /** What `ready` matched (its groups carry what the child announced, e.g. its URL). */
  readonly match: RegExpExecArray
}

/** Spawns `infer-gateway <args>` and resolves once a line of its output matches `ready`. */
export async function spawnCli(
  args: readonly string[],
  ready: RegExp,
  nodeArgs: readonly string[] = [],
  timeoutMs = 30_000,
): Promise<CliProc> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let seen = ''
  let onData: (b: Buffer) => void = () => {}
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Not ready in time: the caller gets no handle to stop the child, so it must not outlive
      // the failure (an orphan keeps its port and CPU). SIGTERM first (a --workers primary takes
      // its workers down), SIGKILL if that is not enough.
      child.kill('SIGTERM')
      setTimeout(() => child.kill('SIGKILL'), 2000).unref()
      reject(
        new SpawnTimeoutError(
          child.pid,
          `timed out waiting for ${ready} from ${args.join(' ')}; output:\n${seen}`,
        ),
      )
    }, timeoutMs)
    onData = (b: Buffer): void => {
      seen += b.toString()
      const m = ready.exec(seen)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m)
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${args.join(' ')} exited with ${code}; output:\n${seen}`))
    })
  })
  child.removeAllListeners('exit')
  // Ready: stop collecting. Re-testing the whole output on every chunk of a chatty child (e.g.
  // --trace-gc) grows quadratically and slowed the benchmark process itself.
  child.stdout?.off('data', onData)
  child.stderr?.off('data', onData)
  seen = ''
  // Keep draining output so a chatty child never blocks on a full pipe.
  child.stdout?.resume()
  child.stderr?.resume()
  return {
    child,
    match,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 5000).unref()
      }),
  }
}

/** The line a data plane (single process or `--workers` primary) logs once it serves. */
const DATAPLANE_LISTENING = /"msg":"data plane listening","url":"([^"]+)"/

export interface DataplaneOptions {
  /** The rest of the command line: `--config`/`--snapshot`/`--push-url`, `--secrets-dir`, … */
  readonly args: readonly string[]
  /** Default 127.0.0.1. */
  readonly host?: string
  /** Default 0: an ephemeral port, read back from the listening line (no free-port race). */
  readonly port?: number
  /** How long it may take to listen (default 60 s: every worker loads the whole data plane). */
  readonly timeoutMs?: number
  /** Node's flags; default the data-plane Deployment's (cdk8s/dataplane-node.ts), as deployed. */
  readonly nodeArgs?: readonly string[]
}

export interface DataplaneProc extends CliProc {
  /** `http://host:port` as the data plane logged it. */
  readonly url: string
}

/**
 * `infer-gateway dataplane` as the tests and benchmarks run it: on loopback, no access log, no
 * drain delay (a stop is immediate); resolves once it (every worker, with `--workers`) listens.
 */
export async function startDataplane(o: DataplaneOptions): Promise<DataplaneProc> {
  const proc = await spawnCli(
    [
      'dataplane',
      ...o.args,
      '--host',
      o.host ?? '127.0.0.1',
      '--port',
      String(o.port ?? 0),
      '--no-access-log',
      '--drain-delay',
      '0',
    ],
    DATAPLANE_LISTENING,
    o.nodeArgs ?? DATAPLANE_NODE_ARGS,
    o.timeoutMs ?? 60_000,
  )
  return { ...proc, url: proc.match[1] ?? '' }
}

/**
 * One simulated engine answering at once (`infer-gateway sim --zero-latency`): the backend of the
 * proxy-path benches, where any engine time would hide what the router adds.
 */
export function startZeroLatencySim(host: string, port: number, model: string): Promise<CliProc> {
  const args = ['sim', '--count', '1', '--host-base', host, '--port', String(port)]
  return spawnCli(
    [...args, '--model', model, '--zero-latency'],
    new RegExp(host.replaceAll('.', '\\.')),
  )
}

export interface OutputProc extends Proc {
  /** The last 8 KiB the process printed (stdout and stderr), for error messages. */
  output(): string
}

/**
 * Spawns any executable for a benchmark (peer routers, helper scripts) with its output kept in a
 * small ring (never a full pipe), for callers that probe readiness themselves.
 */
export function spawnProc(
  bin: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): OutputProc {
  const child = spawn(bin, [...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  let tail = ''
  const keep = (b: Buffer): void => {
    tail = (tail + b.toString()).slice(-8192)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return {
    child,
    output: () => tail,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 5000).unref()
      }),
  }
}

export interface ScriptProc<T> extends Proc {
  /** What the script printed on its `READY <json>` line. */
  readonly ready: T
}

/**
 * Runs one of the benchmarks' helper scripts (`node --import tsx <script>`: a simulated fleet, a
 * balancer, a provider simulator) in its own process with `env` added, and resolves once it prints
 * `READY <json>`. `ipc` opens the IPC channel (the fleet's restarts); `killAfterMs` is how long
 * stop() waits after SIGTERM before SIGKILL.
 */
export async function spawnScript<T>(
  script: string,
  env: Readonly<Record<string, string>>,
  opts: { readonly ipc?: boolean; readonly timeoutMs?: number; readonly killAfterMs?: number } = {},
): Promise<ScriptProc<T>> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.ipc === true ? (['ipc'] as const) : [])],
  })
  const name = basename(script)
  let seen = ''
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      // As in spawnCli: the caller gets no handle, so the child must not outlive the failure.
      child.kill('SIGKILL')
      reject(new SpawnTimeoutError(child.pid, `${name} did not start: ${seen}`))
    }, opts.timeoutMs ?? 30_000)
    const onData = (b: Buffer): void => {
      seen += b.toString()
      const m = /READY (.*)\n/.exec(seen)
      if (m) {
        clearTimeout(timer)
        resolve(JSON.parse(m[1] as string) as T)
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    // 'close', not 'exit': the output is all read by then, so the error carries its last words.
    child.once('close', (code) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited with ${code}: ${seen}`))
    })
  })
  child.removeAllListeners('close')
  child.stdout?.resume()
  child.stderr?.resume()
  return {
    child,
    ready,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs ?? 5000).unref()
      }),
  }
}
