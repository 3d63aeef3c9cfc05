// The set-up the long-form runs share: simulated engines (and optionally one misbehaving engine)
// on their own loopback addresses, a standalone config file, and the gateway as a child process.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { manifests } from '../../test/helpers/config.js'
import { type Fleet, startFleet } from '../sim/index.js'
import { type BadEngine, startBadEngine } from './bad-engine.js'
import { type GatewayProc, spawnGateway } from './kit.js'

export const STACK_MODEL = 'chat'
export const UPSTREAM_MODEL = 'upstream-model'

export interface StackOptions {
  /** First three octets, e.g. `127.0.20`: the gateway is .1, engines .2, .3, … */
  readonly net: string
  readonly engines: number
  /** Misbehaving engines (mode `ok` at start) after the simulated ones, `bad-0`, `bad-1`, … */
  readonly badEngines?: number
  /** Extra gateway flags (timeouts, limits). */
  readonly gatewayArgs?: readonly string[]
  /** Engine response-header and idle timeout (default 2s: a hanging engine is noticed fast). */
  readonly upstreamTimeout?: string
  /** Simulator time scale (default: zero latency). */
  readonly timeScale?: number
  /** Open the gateway's inspector on its loopback address (heapAfterGc). */
  readonly inspect?: boolean
  /** Extra Node flags for the gateway process (diagnosis: `--trace-gc`, `--cpu-prof`). */
  readonly gatewayNodeArgs?: readonly string[]
}

export interface Stack {
  readonly gw: GatewayProc
  readonly fleet: Fleet
  readonly bad: readonly BadEngine[]
  readonly configFile: string
  /** The config text as first written (a rewrite of it keeps the same routes). */
  readonly config: string
  /**
   * The same config plus a pool nobody routes to whose one endpoint is `spare-<n>` on port
   * 1024 + n of an address nothing listens on (engine metrics are labelled by address and port):
   * writing it with a new `n` each time makes every reload a real change (a new snapshot, an
   * endpoint and its series gone, another added) without moving any traffic.
   */
  configWithSpare(n: number): string
  readonly command: string
  stop(): Promise<void>
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const fleet = await startFleet(
    Array.from({ length: o.engines }, (_, i) => ({
      name: `engine-${i}`,
      host: `${o.net}.${i + 2}`,
      port: 0,
      model: UPSTREAM_MODEL,
      metricsFormat: 'vllm' as const,
      maxNumSeqs: 256,
      ...(o.timeScale !== undefined ? { timeScale: o.timeScale } : { zeroLatency: true }),
    })),
  )
  const bad = await Promise.all(
    Array.from({ length: o.badEngines ?? 0 }, (_, i) =>
      startBadEngine({
        name: `bad-${i}`,
        host: `${o.net}.${o.engines + 2 + i}`,
        model: UPSTREAM_MODEL,
      }),
    ),
  )
  const endpoints = [...fleet.sims, ...bad].map((e) => ({
    name: e.name,
    address: e.host,
    port: e.port,
  }))
  const configOf = (spare: number | undefined): string =>
    manifests(
      [
        ...(spare === undefined
          ? []
          : [
              {
                name: 'spare',
                model: UPSTREAM_MODEL,
                endpoints: [
                  { name: `spare-${spare}`, address: `${o.net}.250`, port: 1024 + spare },
                ],
              },
            ]),
        {
          name: 'pool',
          model: UPSTREAM_MODEL,
          endpoints,
          trafficPolicy: {
            timeouts: {
              connect: '1s',
              responseHeader: o.upstreamTimeout ?? '2s',
              idle: o.upstreamTimeout ?? '2s',
            },
            retry: { attempts: 2, retryInterval: '10ms' },
          },
          scheduler: {
            plugins: [
              { name: 'prefix-cache', weight: 3 },
              { name: 'least-pending', weight: 2 },
              { name: 'fairness', args: { maxInFlightPerEndpoint: 64 } },
            ],
          },
        },
      ],
      [
        {
          name: 'r',
          modelName: STACK_MODEL,
          rules: [{ targetModels: [{ modelServerName: 'pool' }] }],
        },
        ...(spare === undefined
          ? []
          : [
              {
                name: 'spare',
                modelName: 'spare',
                rules: [{ targetModels: [{ modelServerName: 'spare' }] }],
              },
            ]),
      ],
    )
  const config = configOf(undefined)
  const dir = await mkdtemp(join(tmpdir(), 'igw-hardening-'))
  const configFile = join(dir, 'gateway.yaml')
  await writeFile(configFile, config)
  const args = ['--config', configFile, ...(o.gatewayArgs ?? [])]
  let gw: GatewayProc
  try {
    gw = await spawnGateway(`${o.net}.1`, args, {
      inspect: o.inspect === true,
      nodeArgs: o.gatewayNodeArgs ?? [],
    })
  } catch (e) {
    await fleet.close()
    await Promise.all(bad.map((b) => b.close()))
    await rm(dir, { recursive: true, force: true })
    throw e
  }
  return {
    gw,
    fleet,
    bad,
    configFile,
    config,
    configWithSpare: (n) => configOf(n),
    command: `infer-gateway dataplane --host ${o.net}.1 ${args.join(' ').replace(dir, '$TMP')}`,
    async stop() {
      await gw.stop()
      await fleet.close()
      await Promise.all(bad.map((b) => b.close()))
      await rm(dir, { recursive: true, force: true })
    },
  }
}
