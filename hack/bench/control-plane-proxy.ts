// A loopback TCP proxy in front of the API server that can go silent: connections stay open but
// nothing flows (a half-dead network path, the failure that makes client-node 1.4 watches hang
// forever). Used to prove the operator's watchdogs and leader step-down on the real API server.
import { readFile, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  readonly port: number
  /** Stop forwarding in both directions; new connections are accepted and held. */
  freeze(): void
  /** Resume forwarding (held connections are connected upstream now). */
  thaw(): void
  close(): Promise<void>
}

export async function startTcpProxy(targetPort: number, host = '127.0.0.1'): Promise<TcpProxy> {
  let frozen = false
  const pairs = new Set<{ a: Socket; b?: Socket }>()
  const held: Socket[] = []
  const connect = (a: Socket): void => {
    const b = createConnection({ host, port: targetPort })
    const pair = { a, b }
    pairs.add(pair)
    a.pipe(b)
    b.pipe(a)
    const end = (): void => {
      a.destroy()
      b.destroy()
      pairs.delete(pair)
    }
    a.on('error', end).on('close', end)
    b.on('error', end).on('close', end)
  }
  const server: Server = createServer((a) => {
    if (frozen) {
      a.on('error', () => a.destroy())
      held.push(a)
      return
    }
    connect(a)
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  return {
    port,
    freeze() {
      frozen = true
      for (const p of pairs) {
        p.a.pause()
        p.b?.pause()
      }
    },
    thaw() {
      frozen = false
      for (const p of pairs) {
        p.a.resume()
        p.b?.resume()
      }
      for (const a of held.splice(0)) if (!a.destroyed) connect(a)
    },
    close() {
      for (const p of pairs) {
        p.a.destroy()
        p.b?.destroy()
      }
      for (const a of held.splice(0)) a.destroy()
      return new Promise<void>((r) => server.close(() => r()))
    },
  }
}

/** A copy of `kubeconfig` whose server is the proxy (same CA: the cert is for 127.0.0.1). */
export async function proxiedKubeconfig(
  kubeconfig: string,
  out: string,
  proxyPort: number,
): Promise<string> {
  const text = await readFile(kubeconfig, 'utf8')
  await writeFile(
    out,
    text.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${proxyPort}`),
    {
      mode: 0o600,
    },
  )
  return out
}
