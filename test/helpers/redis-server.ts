// A real redis-server (the Debian package) on loopback for tests and benchmarks: a free port, its
// own temp dir, append-only file with fsync on every write (so a kill -9 loses nothing, as a
// production Redis with persistence behaves). `restart()` kills it hard and starts it again on the
// same port and data, which is what the "Redis restarts mid-run" tests need.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServer {
  readonly host: string
  readonly port: number
  readonly address: string
  readonly dir: string
  /** SIGKILL; resolves when the process is gone. */
  kill(): Promise<void>
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>
  /** kill, wait `downMs`, start. */
  restart(downMs?: number): Promise<void>
  /** SIGSTOP: connections stay open, nothing answers (a hung or paused Redis). */
  pause(): void
  /** SIGCONT after pause(). */
  resume(): void
  stop(): Promise<void>
}

export function redisAvailable(): boolean {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, host, r))
  const addr = s.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

export async function startRedis(
  host = '127.0.0.1',
  opts: { appendfsync?: 'always' | 'everysec' } = {},
): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'igw-redis-'))
  const port = await freePort(host)
  let child: ChildProcess | undefined

  const start = async (): Promise<void> => {
    const p = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        host,
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        opts.appendfsync ?? 'always',
        '--save',
        '',
        '--protected-mode',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = p
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`redis-server did not start:\n${out}`)),
        10_000,
      )
      const onData = (b: Buffer): void => {
        out += b.toString()
        if (/Ready to accept connections/.test(out)) {
          clearTimeout(timer)
          resolve()
        }
      }
      p.stdout?.on('data', onData)
      p.stderr?.on('data', onData)
      p.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${code}:\n${out}`))
      })
    })
    p.removeAllListeners('exit')
    p.stdout?.resume()
    p.stderr?.resume()
  }

  const kill = async (): Promise<void> => {
    const p = child
    child = undefined
    if (!p || p.exitCode !== null) return
    await new Promise<void>((r) => {
      p.once('exit', () => r())
      p.kill('SIGKILL')
    })
  }

  await start()
  return {
    host,
    port,
    address: `${host}:${port}`,
    dir,
    kill,
    start,
    async restart(downMs = 300) {
      await kill()
      await new Promise((r) => setTimeout(r, downMs))
      await start()
    },
    pause() {
      child?.kill('SIGSTOP')
    },
    resume() {
      child?.kill('SIGCONT')
    },
    async stop() {
      if (child) child.kill('SIGCONT')
      await kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
