// `infer-gateway epp` flags: what is required, what is refused with a usage error; and one EPP
// started in process against simulated pods, whose engine metrics reach the scheduler from the
// scrape worker thread.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type SimHandle, startSimulator } from '../../hack/sim/index.js'
import { manifests } from '../../test/helpers/config.js'
import { until } from '../../test/helpers/until.js'
import { DEFAULT_SCHEDULER_WARMUP } from '../command.js'
import { memoryLogger, silentLogger } from '../log.js'
import { parseEppArgs, type RunningEpp, startEpp } from './command.js'
import { BodyMode } from './proto.js'

const parse = (...a: string[]) => parseEppArgs(a, silentLogger)

describe('parseEppArgs', () => {
  it('--pool with the operator push channel and its token; defaults as GAIE EPPs', () => {
    const o = parse(
      '--pool',
      'llm/pool',
      '--push-url',
      'http://op/v1/snapshot',
      '--push-token-file',
      '/t',
    )
    expect(o?.pool).toEqual({ kind: 'pool', key: 'llm/pool' })
    expect(o?.pushTokenFile).toBe('/t')
    expect([o?.grpcPort, o?.metricsPort, o?.fallbacks, o?.bodyMode, o?.scrape]).toEqual([
      9002,
      9090,
      2,
      BodyMode.FULL_DUPLEX_STREAMED,
      'thread',
    ])
  })

  it('--server, --body-mode buffered, --metrics-port off, --fallbacks 0', () => {
    const o = parse(
      '--server',
      'default/s',
      '--config',
      'a.yaml',
      '--body-mode',
      'buffered',
      '--metrics-port',
      'off',
      '--fallbacks',
      '0',
    )
    expect(o?.pool).toEqual({ kind: 'server', key: 'default/s' })
    expect(o?.bodyMode).toBe(BodyMode.BUFFERED)
    expect(o?.metricsPort).toBeUndefined()
    expect(o?.fallbacks).toBe(0)
    expect(o?.config).toEqual({ kind: 'manifests', paths: ['a.yaml'] })
  })

  it('refuses missing or double pools, bad names, modes and config combinations', () => {
    const usage = (a: string[], msg: RegExp) => expect(() => parse(...a)).toThrow(msg)
    usage(['--config', 'a'], /exactly one of --pool/)
    usage(['--pool', 'a/b', '--server', 'a/b', '--config', 'a'], /exactly one of --pool/)
    usage(['--pool', 'nope', '--config', 'a'], /--pool must be namespace\/name/)
    usage(['--pool', 'a/b'], /give --config/)
    usage(['--pool', 'a/b', '--config', 'a', '--snapshot', 's'], /cannot be combined/)
    usage(
      ['--pool', 'a/b', '--config', 'a', '--body-mode', 'partial'],
      /--body-mode must be one of/,
    )
    usage(['--pool', 'a/b', '--config', 'a', '--max-body-bytes', '0'], /at least 1/)
    usage(['--pool', 'a/b', '--config', 'a', '--scrape', 'worker'], /--scrape must be one of/)
  })

  it('--scrape inline and off', () => {
    expect(parse('--pool', 'a/b', '--config', 'a', '--scrape', 'inline')?.scrape).toBe('inline')
    expect(parse('--pool', 'a/b', '--config', 'a', '--scrape', 'off')?.scrape).toBe('off')
  })

  it("--scheduler-warmup: the data plane's default, 0 turns it off, a bad count is refused", () => {
    expect(parse('--pool', 'a/b', '--config', 'a')?.warmup).toBe(DEFAULT_SCHEDULER_WARMUP)
    expect(parse('--pool', 'a/b', '--config', 'a', '--scheduler-warmup', '0')?.warmup).toBe(0)
    expect(() => parse('--pool', 'a/b', '--config', 'a', '--scheduler-warmup', 'many')).toThrow(
      /--scheduler-warmup/,
    )
  })

  it('--debug-phases (off by default)', () => {
    expect(parse('--pool', 'a/b', '--config', 'a')?.debugPhases).toBeUndefined()
    expect(parse('--pool', 'a/b', '--config', 'a', '--debug-phases')?.debugPhases).toBe(true)
  })

  it('--help returns nothing to run', () => {
    expect(parse('--help')).toBeUndefined()
  })
})

describe('startEpp', () => {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  it("scrapes the pool in a worker thread: every pod's engine metrics reach the scheduler", async () => {
    const sims: SimHandle[] = []
    for (const host of ['127.0.0.247', '127.0.0.248']) {
      const s = await startSimulator({
        name: `epp-scrape-${host}`,
        host,
        port: 0,
        model: 'm',
        metricsFormat: 'vllm',
        zeroLatency: true,
      })
      cleanups.push(() => s.close())
      sims.push(s)
    }
    const dir = await mkdtemp(join(tmpdir(), 'epp-scrape-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const config = join(dir, 'pool.yaml')
    const eps = sims.map((s) => ({ name: s.name, address: s.host, port: s.port }))
    await writeFile(config, manifests([{ name: 'pool', endpoints: eps }], []))
    const log = memoryLogger()
    const epp: RunningEpp = await startEpp({
      pool: { kind: 'server', key: 'default/pool' },
      config: { kind: 'manifests', paths: [config] },
      host: '127.0.0.1',
      grpcPort: 0,
      fallbacks: 2,
      bodyMode: BodyMode.FULL_DUPLEX_STREAMED,
      maxBodyBytes: 1 << 20,
      log,
    })
    cleanups.push(() => epp.close())
    const ids = sims.map((s) => `${s.host}:${s.port}`)
    await until(
      () => ids.every((id) => epp.scheduler.state(id)?.metrics?.engineType === 'vLLM'),
      20_000,
      'scraped metrics of both pods',
    )
    const scrape = (epp.scheduler.debug() as { scrape: Record<string, unknown> }).scrape
    expect(scrape).toMatchObject({ enabled: true, thread: 'thread' })
    for (const id of ids) expect(epp.scheduler.state(id)?.metrics?.missing).toEqual([])
    expect(log.records.filter((r) => r.level === 'warn' || r.level === 'error')).toEqual([])
  })
})
