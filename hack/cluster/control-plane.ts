// A real Kubernetes control plane on loopback: etcd + kube-apiserver (+ kubectl), built by
// hack/cluster/build.sh. Tests and `npm run dev:cluster` talk to the genuine API server, so RBAC,
// validation, status subresources, watches and resourceVersions behave exactly as in a cluster.
// There is no controller-manager or scheduler: namespaces never finish terminating and Pods are
// never scheduled; tests create Pods through the API and set their status themselves.
import { spawn } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { constants, existsSync } from 'node:fs'
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { type SupervisedProcess, supervise } from './process.js'

/** Must match K8S_VERSION's default in build.sh (a test checks they agree). */
export const DEFAULT_K8S_VERSION = 'v1.34.4'

export type ControlPlaneErrorCode =
  | 'BINARIES_MISSING'
  | 'ETCD_START_FAILED'
  | 'APISERVER_START_FAILED'
  | 'STOPPED'

export class ControlPlaneError extends Error {
  override readonly name = 'ControlPlaneError'
  readonly code: ControlPlaneErrorCode

  constructor(code: ControlPlaneErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

export interface KubectlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export interface ControlPlane {
  /** `https://127.0.0.1:PORT`; the port stays the same across API server restarts. */
  readonly server: string
  readonly kubeconfigPath: string
  /** Static bearer token of user `admin` in group `system:masters`. */
  readonly token: string
  /** The API server's self-signed CA (also embedded in the kubeconfig). */
  readonly caCertPath?: string
  /** `http://127.0.0.1:PORT` of etcd. */
  readonly etcdServer: string
  readonly dataDir: string
  kubectl(args: readonly string[], opts?: { input?: string }): Promise<KubectlResult>
  /** Stops only kube-apiserver (etcd and its data stay); no-op if already stopped. */
  stopApiServer(): Promise<void>
  /** Starts kube-apiserver again on the same port and waits for /readyz; no-op if running. */
  startApiServer(): Promise<void>
  /** Stops everything and removes the data dir if this module created it. */
  stop(): Promise<void>
}

export interface StartControlPlaneOptions {
  /** Where kube-apiserver, etcd and kubectl live (default: `binDir()`). */
  readonly binDir?: string
  /** Kept after stop() when given; a fresh temp dir (removed on stop) otherwise. */
  readonly dataDir?: string
  /** Receives every line the child processes print, prefixed with their name. */
  readonly log?: (line: string) => void
  /** How long to wait for /readyz (default 120 s: a cold start on 2 busy cores is slow). */
  readonly readyTimeoutMs?: number
}

/** Where build.sh puts the binaries; same defaults and environment variables as the script. */
export function binDir(): string {
  const cache = process.env['INFER_GATEWAY_CACHE'] || join(homedir(), '.cache', 'infer-gateway')
  const version = process.env['K8S_VERSION'] || DEFAULT_K8S_VERSION
  return join(cache, 'k8s', version, 'bin')
}

const BINARIES = ['etcd', 'kube-apiserver', 'kubectl'] as const

/** Throws BINARIES_MISSING naming build.sh when any binary is absent. */
export async function checkBinaries(dir: string): Promise<void> {
  const missing: string[] = []
  for (const b of BINARIES) {
    try {
      await access(join(dir, b), constants.X_OK)
    } catch {
      missing.push(b)
    }
  }
  if (missing.length > 0) {
    throw new ControlPlaneError(
      'BINARIES_MISSING',
      `${missing.join(', ')} not found in ${dir}: run hack/cluster/build.sh first ` +
        '(it builds kube-apiserver, kubectl and etcd from the Go module proxy into a cache)',
    )
  }
}

/** A free TCP port on 127.0.0.1 (the OS picks; the tiny race until the child binds is accepted). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no port assigned'))))
    })
  })
}

interface HttpResult {
  readonly status: number
  readonly body: string
}

/** GET over http(s) with an optional bearer token; `ca` undefined means "don't verify". */
function get(
  url: string,
  opts: { token?: string; ca?: Buffer; timeoutMs?: number } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const headers: Record<string, string> = {}
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`
    const onResponse = (res: import('node:http').IncomingMessage): void => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      )
      res.on('error', reject)
    }
    const req =
      u.protocol === 'https:'
        ? httpsRequest(
            u,
            {
              headers,
              // Only ever our own loopback child; before its CA is known we cannot verify it.
              rejectUnauthorized: opts.ca !== undefined,
              ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
              agent: false,
            },
            onResponse,
          )
        : httpRequest(u, { headers, agent: false }, onResponse)
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error(`timeout: GET ${url}`)))
    req.on('error', reject)
    req.end()
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `probe` until it returns true; fails early if `proc` exits. */
async function waitFor(
  what: string,
  proc: SupervisedProcess,
  timeoutMs: number,
  code: ControlPlaneErrorCode,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastError = ''
  while (Date.now() < deadline) {
    if (!proc.running()) {
      throw new ControlPlaneError(
        code,
        `${proc.name} exited (code ${await proc.exited}) before ${what}; last output:\n${proc.tail()}`,
      )
    }
    try {
      if (await probe()) return
    } catch (e) {
      lastError = e instanceof Error ? e.message : String(e)
    }
    await sleep(250)
  }
  throw new ControlPlaneError(
    code,
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}; last output of ${proc.name}:\n${proc.tail()}`,
  )
}

function kubeconfigYaml(server: string, token: string, caPem: Buffer | undefined): string {
  const tls =
    caPem !== undefined
      ? `    certificate-authority-data: ${caPem.toString('base64')}`
      : '    insecure-skip-tls-verify: true'
  return `apiVersion: v1
kind: Config
clusters:
- name: infer-gateway-local
  cluster:
    server: ${server}
${tls}
users:
- name: admin
  user:
    token: ${token}
contexts:
- name: infer-gateway-local
  context:
    cluster: infer-gateway-local
    user: admin
    namespace: default
current-context: infer-gateway-local
`
}

export async function startControlPlane(
  opts: StartControlPlaneOptions = {},
): Promise<ControlPlane> {
  const bins = opts.binDir ?? binDir()
  await checkBinaries(bins)
  const ownDataDir = opts.dataDir === undefined
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'infer-gateway-cp-')))
  const log = opts.log
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000
  const pki = join(dataDir, 'pki')
  await mkdir(pki, { recursive: true })
  await mkdir(join(dataDir, 'logs'), { recursive: true })

  const [etcdClientPort, etcdPeerPort, apiPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ]
  const etcdServer = `http://127.0.0.1:${etcdClientPort}`
  const server = `https://127.0.0.1:${apiPort}`

  // Service-account signing keys: kube-apiserver refuses to start without them, and keeping them
  // in the data dir means tokens stay valid across API server restarts.
  const saKey = join(pki, 'sa.key')
  const saPub = join(pki, 'sa.pub')
  if (!existsSync(saKey) || !existsSync(saPub)) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    await writeFile(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 })
    await writeFile(saPub, publicKey.export({ type: 'spki', format: 'pem' }))
  }
  const token = randomBytes(24).toString('hex')
  const tokenFile = join(pki, 'tokens.csv')
  // token,user,uid,"groups": system:masters bypasses RBAC, as a cluster admin's credentials do.
  await writeFile(tokenFile, `${token},admin,admin,"system:masters"\n`, { mode: 0o600 })

  const etcdPeer = `http://127.0.0.1:${etcdPeerPort}`
  const etcd = supervise({
    name: 'etcd',
    command: join(bins, 'etcd'),
    args: [
      '--name=default',
      `--data-dir=${join(dataDir, 'etcd')}`,
      `--listen-client-urls=${etcdServer}`,
      `--advertise-client-urls=${etcdServer}`,
      `--listen-peer-urls=${etcdPeer}`,
      `--initial-advertise-peer-urls=${etcdPeer}`,
      `--initial-cluster=default=${etcdPeer}`,
      // Test data need not survive a power cut, and fsync dominates etcd latency on shared disks.
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    logFile: join(dataDir, 'logs', 'etcd.log'),
    log,
  })

  let apiserver: SupervisedProcess | undefined
  let stopped = false
  let caCertPath: string | undefined

  const apiArgs = [
    `--etcd-servers=${etcdServer}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    // No --tls-cert-file: the API server makes a CA and a serving cert for 127.0.0.1/localhost
    // here on first start and reuses them afterwards, so the kubeconfig's CA stays valid.
    `--cert-dir=${pki}`,
    `--token-auth-file=${tokenFile}`,
    // RBAC so that our least-privilege manifests are actually enforced in tests.
    '--authorization-mode=RBAC',
    // Never routed anywhere: ClusterIPs are just allocated numbers without kube-proxy.
    '--service-cluster-ip-range=10.96.0.0/24',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${saPub}`,
    `--service-account-signing-key-file=${saKey}`,
    // The ServiceAccount admission plugin rejects Pods until the controller-manager has created
    // the namespace's `default` ServiceAccount, which never happens here.
    '--disable-admission-plugins=ServiceAccount',
    // The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation
    // rejects (loopback), making the reconciler log an error every 10 s.
    '--endpoint-reconciler-type=none',
    '--allow-privileged=true',
    '--profiling=false',
  ]

  const startApi = async (): Promise<void> => {
    if (stopped) throw new ControlPlaneError('STOPPED', 'the control plane was stopped')
    if (apiserver?.running()) return
    const proc = supervise({
      name: 'kube-apiserver',
      command: join(bins, 'kube-apiserver'),
      args: apiArgs,
      logFile: join(dataDir, 'logs', 'kube-apiserver.log'),
      log,
    })
    apiserver = proc
    const ca = caCertPath !== undefined ? await readFile(caCertPath) : undefined
    await waitFor('/readyz', proc, readyTimeoutMs, 'APISERVER_START_FAILED', async () => {
      const r = await get(`${server}/readyz`, { token, ...(ca ? { ca } : {}) })
      return r.status === 200
    })
    // /readyz does not cover the bootstrap controller that creates `default`, `kube-system`
    // and `kube-public`; objects created in them right away would be rejected.
    await waitFor('namespace default', proc, readyTimeoutMs, 'APISERVER_START_FAILED', async () => {
      const r = await get(`${server}/api/v1/namespaces/default`, { token, ...(ca ? { ca } : {}) })
      return r.status === 200
    })
  }

  const stopApi = async (): Promise<void> => {
    const proc = apiserver
    if (proc === undefined) return
    await proc.stop(15_000)
  }

  const kubeconfigPath = join(dataDir, 'kubeconfig')
  try {
    await waitFor('etcd /health', etcd, 30_000, 'ETCD_START_FAILED', async () => {
      const r = await get(`${etcdServer}/health`)
      return r.status === 200 && r.body.includes('"health":"true"')
    })
    await startApi()
    // The self-signed cert file holds the serving cert followed by its CA; as a CA bundle it lets
    // clients verify the server. Prove it works before writing it into the kubeconfig.
    const certFile = join(pki, 'apiserver.crt')
    let caPem: Buffer | undefined
    if (existsSync(certFile)) {
      const pem = await readFile(certFile)
      const verified = await get(`${server}/readyz`, { token, ca: pem }).then(
        (r) => r.status === 200,
        (e: unknown) => {
          log?.(`[control-plane] CA verification failed, kubeconfig skips TLS verify: ${String(e)}`)
          return false
        },
      )
      if (verified) {
        caPem = pem
        caCertPath = certFile
      }
    }
    await writeFile(kubeconfigPath, kubeconfigYaml(server, token, caPem), { mode: 0o600 })
  } catch (e) {
    await apiserver?.stop(2000)
    await etcd.stop(2000)
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
    throw e
  }

  const kubectlBin = join(bins, 'kubectl')
  const kubectl = (
    args: readonly string[],
    kopts: { input?: string } = {},
  ): Promise<KubectlResult> =>
    new Promise((resolve, reject) => {
      const child = spawn(
        kubectlBin,
        // --cache-dir keeps discovery caches out of $HOME (and per cluster, as ports are reused).
        [
          `--kubeconfig=${kubeconfigPath}`,
          `--cache-dir=${join(dataDir, 'kubectl-cache')}`,
          ...args,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: kubeconfigPath } },
      )
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (c: Buffer) => out.push(c))
      child.stderr.on('data', (c: Buffer) => err.push(c))
      child.stdin.on('error', () => {})
      child.once('error', reject)
      child.once('close', (code, signal) =>
        resolve({
          code: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      )
      child.stdin.end(kopts.input ?? '')
    })

  const plane: ControlPlane = {
    server,
    kubeconfigPath,
    token,
    ...(caCertPath !== undefined ? { caCertPath } : {}),
    etcdServer,
    dataDir,
    kubectl,
    stopApiServer: stopApi,
    startApiServer: startApi,
    async stop() {
      if (stopped) return
      stopped = true
      await stopApi()
      await etcd.stop(10_000)
      if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
    },
  }
  return plane
}
