// Child processes for benchmarks: each part runs in its own process (as in production), so the
// gateway's event loop is not shared with the load generator or the engines.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

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

/** Spawns `infer-gateway <args>` and resolves once a line of its output matches `ready`. */
export async function spawnCli(
  args: readonly string[],
  ready: RegExp,
  nodeArgs: readonly string[] = [],
  timeoutMs = 30_000,
): Promise<Proc> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let seen = ''
  await new Promise<void>((resolve, reject) => {
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
    const onData = (b: Buffer): void => {
      seen += b.toString()
      if (ready.test(seen)) {
        clearTimeout(timer)
        resolve()
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
  // Keep draining output so a chatty child never blocks on a full pipe.
  child.stdout?.resume()
  child.stderr?.resume()
  return {
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 5000).unref()
      }),
  }
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
