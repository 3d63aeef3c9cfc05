// Supervised child processes for the local control plane. Two guarantees matter to tests:
// 1. `stop()` returns only once the program itself has exited (so its port can be reused at once);
// 2. the program dies with us, even if we are SIGKILLed (a crashed vitest worker must not leave
//    an API server holding ports and a data dir behind).
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'

// Node has no PR_SET_PDEATHSIG, so each program runs under a tiny sh guard in its own process group:
// - the guard holds the read end of a pipe whose write end only we hold; EOF on it means we are
//   gone (however we died), and the guard then terminates the program (KILL after 10 s) and exits;
// - the guard traps TERM and keeps waiting, so its own exit marks the program's exit;
// - a background list's stdin is /dev/null in a non-interactive sh, hence the fd 3 dance.
const GUARD = `
trap : TERM INT
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
(
  cat <&3 >/dev/null
  kill -TERM "$child" 2>/dev/null
  n=0
  while kill -0 "$child" 2>/dev/null && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$child" 2>/dev/null
) &
watcher=$!
exec 3<&-
while :; do
  wait "$child"
  rc=$?
  kill -0 "$child" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
exit "$rc"
`

const TAIL_LINES = 60

/** Process groups still alive, killed synchronously if this process exits normally. */
const liveGroups = new Set<number>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // 'exit' handlers must be synchronous: process.kill is. The stdin-EOF guard covers the rest.
  process.once('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL')
  })
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // ESRCH: the whole group is already gone, which is what we wanted.
  }
}

export interface SupervisedProcess {
  readonly name: string
  readonly pid: number
  /** Resolves with the exit code (or 128+signal) once the program has exited. */
  readonly exited: Promise<number>
  running(): boolean
  /** The last lines the program printed, for error messages. */
  tail(): string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the program is gone. */
  stop(graceMs?: number): Promise<void>
}

export interface SuperviseOptions {
  readonly name: string
  readonly command: string
  readonly args: readonly string[]
  /** Every output line is appended here. */
  readonly logFile: string
  readonly log?: ((line: string) => void) | undefined
  readonly env?: NodeJS.ProcessEnv
}

export function supervise(opts: SuperviseOptions): SupervisedProcess {
  installExitHook()
  const child: ChildProcess = spawn(
    '/bin/sh',
    ['-c', GUARD, opts.name, opts.command, ...opts.args],
    {
      // detached = setsid: the guard leads a new process group we can signal as a whole, and a
      // terminal Ctrl-C reaches only us, so shutdown order stays ours.
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    },
  )
  const pid = child.pid
  if (pid === undefined) throw new Error(`could not spawn ${opts.command}`)
  liveGroups.add(pid)
  const file: WriteStream = createWriteStream(opts.logFile, { flags: 'a' })
  const lines: string[] = []
  let partial = ''
  const onData = (chunk: Buffer): void => {
    file.write(chunk)
    const text = partial + chunk.toString('utf8')
    const parts = text.split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      if (lines.length > TAIL_LINES) lines.shift()
      opts.log?.(`[${opts.name}] ${line}`)
    }
  }
  child.stdout?.on('data', onData)
  child.stderr?.on('data', onData)
  // A broken stdin pipe (guard already gone) must not become an uncaught error.
  child.stdin?.on('error', () => {})

  let code: number | undefined
  const exited = new Promise<number>((resolve) => {
    child.once('exit', (c, signal) => {
      code = c ?? 128 + signalNumber(signal)
      liveGroups.delete(pid)
      // The guard is gone; sweep anything left in its group (the watcher subshell).
      killGroup(pid, 'SIGKILL')
      child.stdin?.destroy()
      file.end()
      resolve(code)
    })
  })

  return {
    name: opts.name,
    pid,
    exited,
    running: () => code === undefined,
    tail: () => [...lines, partial].filter((l) => l !== '').join('\n'),
    async stop(graceMs = 10_000) {
      if (code !== undefined) return
      killGroup(pid, 'SIGTERM')
      const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs)
      try {
        await exited
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  if (signal === 'SIGKILL') return 9
  if (signal === 'SIGTERM') return 15
  if (signal === 'SIGINT') return 2
  return 0
}
