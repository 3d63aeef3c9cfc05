// `infer-gateway dev-cluster` / `npm run dev:cluster`: a real local control plane for poking at
// the operator and CRDs by hand. Builds the binaries if needed, starts etcd + kube-apiserver on
// loopback, prints how to point kubectl at them and runs until Ctrl-C.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { binDir, ControlPlaneError, checkBinaries, startControlPlane } from './control-plane.js'

export const BUILD_SCRIPT = fileURLToPath(new URL('./build.sh', import.meta.url))

const HELP = `Usage: infer-gateway dev-cluster [options]

Start a local Kubernetes control plane (etcd + kube-apiserver, no nodes) on 127.0.0.1 and keep it
running until Ctrl-C. Binaries come from hack/cluster/build.sh (built once into a cache).

Options:
  --bin-dir DIR    use binaries from DIR (skips the build)
  --data-dir DIR   keep etcd data, keys and kubeconfig in DIR (default: a temp dir, removed on exit)
  --no-build       fail instead of running build.sh when binaries are missing
  --verbose        print etcd and kube-apiserver output
  -h, --help       show this help
`

/** Runs build.sh with inherited output; it is idempotent and returns at once when up to date. */
export function runBuildScript(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'inherit', 'inherit'] })
    child.once('error', reject)
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${BUILD_SCRIPT} exited with ${code}`)),
    )
  })
}

export async function runDevClusterCommand(args: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...args],
    strict: true,
    allowPositionals: false,
    options: {
      'bin-dir': { type: 'string' },
      'data-dir': { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const bins = values['bin-dir'] ?? binDir()
  if (values['bin-dir'] === undefined && !values['no-build']) await runBuildScript()

  await checkBinaries(bins).catch((e: unknown) => {
    if (e instanceof ControlPlaneError && e.code === 'BINARIES_MISSING') {
      throw new ControlPlaneError(
        e.code,
        `${e.message}\n(or drop --no-build / --bin-dir to let dev-cluster build them)`,
      )
    }
    throw e
  })
  const started = Date.now()
  process.stdout.write('Starting etcd and kube-apiserver on 127.0.0.1 …\n')
  const cp = await startControlPlane({
    binDir: bins,
    ...(values['data-dir'] !== undefined ? { dataDir: values['data-dir'] } : {}),
    ...(values.verbose ? { log: (line: string) => process.stdout.write(`${line}\n`) } : {}),
  })

  process.stdout.write(
    `Control plane ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${cp.server}\n\n` +
      `  export KUBECONFIG=${cp.kubeconfigPath}\n` +
      `  export PATH=${bins}:$PATH   # kubectl matching the server\n\n` +
      `  token:    ${cp.token}\n` +
      `  etcd:     ${cp.etcdServer}\n` +
      `  data dir: ${cp.dataDir} (logs in logs/)\n\n` +
      'No controller-manager or scheduler runs: Pods stay Pending unless you patch their status.\n' +
      'Press Ctrl-C to stop.\n',
  )

  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      resolve()
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
  process.stdout.write('\nStopping the control plane …\n')
  await cp.stop()
}
