import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadKubeConfig, type OperatorConfig, operatorHelp, parseOperatorArgs } from './command.js'

const parse = (args: string[], env: NodeJS.ProcessEnv = {}): OperatorConfig => {
  const r = parseOperatorArgs(args, env)
  if (r === 'help') throw new Error('unexpected help')
  return r
}

describe('infer-gateway operator flags', () => {
  it('has defaults that match the documented ones', () => {
    const c = parse([])
    expect(c.ports).toEqual([8082])
    expect(c.host).toBe('0.0.0.0')
    expect(c.controller.namespace).toBe('infer-gateway-system')
    expect(c.controller.leaderElection).toBeUndefined()
    expect(c.controller.debounceMs).toBe(50)
    expect(c.controller.maxSnapshotBytes).toBe(1_000_000)
    expect(c.controller.watchTimeoutSeconds).toEqual([300, 600])
    expect(c.controller.stallMs).toBe(630_000)
    expect(c.controller.identity).toMatch(/_[0-9a-f]{8}$/)
    for (const flag of [
      '--kubeconfig',
      '--leader-elect',
      '--port',
      '--lease-duration',
      '--debounce',
    ])
      expect(operatorHelp).toContain(flag)
  })

  it('takes namespace and identity from the downward API, flags win', () => {
    const env = { POD_NAMESPACE: 'gw', POD_NAME: 'op-7' }
    expect(parse([], env).controller).toMatchObject({ namespace: 'gw', identity: 'op-7' })
    expect(parse(['--namespace', 'x', '--identity', 'me'], env).controller).toMatchObject({
      namespace: 'x',
      identity: 'me',
    })
  })

  it('leader election with Go durations; the install manifests’ --http-port/--push-port work', () => {
    const c = parse([
      '--leader-elect',
      '--lease-duration=4s',
      '--renew-deadline=3s',
      '--retry-period=500ms',
      '--push-port=8082',
      '--http-port=8081',
    ])
    expect(c.controller.leaderElection).toEqual({
      leaseName: 'infer-gateway-operator',
      leaseDurationMs: 4000,
      renewDeadlineMs: 3000,
      retryPeriodMs: 500,
    })
    expect(c.ports).toEqual([8082, 8081])
  })

  it('rejects bad values with a usage error naming the flag', () => {
    const bad: [string[], RegExp][] = [
      [['--debounce', 'soon'], /--debounce must be a duration/],
      [['--port', '70000'], /--port must be a port/],
      [
        ['--leader-elect', '--renew-deadline', '20s'],
        /retry-period < --renew-deadline < --lease-duration/,
      ],
      [['--log-level', 'loud'], /--log-level/],
      [['--max-snapshot-bytes=0'], /--max-snapshot-bytes/],
      [['--port', '1', '--push-port', '2'], /same setting/],
    ]
    for (const [args, re] of bad) {
      expect(() => parseOperatorArgs(args, {})).toThrow(
        expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(re) }),
      )
    }
    expect(() => parseOperatorArgs(['--nope'], {})).toThrow(/Unknown option/)
    expect(parseOperatorArgs(['-h'], {})).toBe('help')
  })

  it('loads a kubeconfig file, and fails with KUBECONFIG when there is none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'op-cmd-'))
    try {
      const path = join(dir, 'kc')
      await writeFile(
        path,
        'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
      )
      expect(loadKubeConfig(path).getCurrentCluster()?.server).toBe('https://127.0.0.1:1')
      expect(() => loadKubeConfig(join(dir, 'missing'))).toThrow(
        expect.objectContaining({ code: 'KUBECONFIG' }),
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
