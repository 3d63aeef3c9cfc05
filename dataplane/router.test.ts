import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { endpoint, route, server, snapshot } from '../test/helpers/snapshot.js'
import { RouteTable } from './router.js'

const a = server('a', [endpoint('a-0', '127.0.0.2', 8000)], { model: 'org/base-model' })
const b = server('b', [endpoint('b-0', '127.0.0.3', 8000)])
const noHeaders = (): undefined => undefined

function req(model: string, headers: Record<string, string> = {}, path = '/v1/chat/completions') {
  return { model, path, header: (n: string) => headers[n] }
}

describe('RouteTable', () => {
  it('matches modelName, rewrites the model for base requests, keeps LoRA names', () => {
    const t = new RouteTable(
      snapshot(
        [
          route('r', {
            modelName: 'base',
            loraAdapters: ['lora-x'],
            rules: [{ name: 'all', targets: [{ server: a.key, weight: 100 }] }],
          }),
        ],
        [a],
      ),
    )
    const r1 = t.resolve(req('base'))
    expect(r1.kind).toBe('chain')
    if (r1.kind === 'chain') {
      expect(r1.decision.isLora).toBe(false)
      expect(r1.decision.targets[0]?.upstreamModel).toBe('org/base-model')
    }
    const r2 = t.resolve(req('lora-x'))
    expect(
      r2.kind === 'chain' &&
        r2.decision.isLora &&
        r2.decision.targets[0]?.upstreamModel === 'lora-x',
    ).toBe(true)
    expect(t.resolve(req('nope')).kind).toBe('unknown-model')
    expect(t.models.map((m) => m.id)).toEqual(['base', 'lora-x'])
    // Base-model results of a plain rule are built once and shared; LoRA ones keep their name.
    expect(t.resolve(req('base'))).toBe(r1)
    expect(t.resolve(req('lora-x'))).not.toBe(r2)
  })

  it('takes the first matching rule; header, uri and body-model conditions are ANDed', () => {
    const t = new RouteTable(
      snapshot(
        [
          route('r', {
            modelName: 'm',
            rules: [
              {
                name: 'premium',
                match: {
                  headers: [{ name: 'x-tier', match: { kind: 'exact', value: 'gold' } }],
                  uri: { kind: 'prefix', value: '/v1/chat' },
                },
                targets: [{ server: b.key, weight: 1 }],
              },
              {
                name: 'regex',
                match: {
                  headers: [{ name: 'x-user', match: { kind: 'regex', value: '^team-[0-9]+$' } }],
                },
                targets: [{ server: b.key, weight: 1 }],
              },
              { name: 'default', targets: [{ server: a.key, weight: 1 }] },
            ],
          }),
        ],
        [a, b],
      ),
    )
    const pick = (h: Record<string, string>, path?: string) => {
      const r = t.resolve(req('m', h, path))
      return r.kind === 'chain' ? r.decision.rule.name : r.kind
    }
    expect(pick({ 'x-tier': 'gold' })).toBe('premium')
    expect(pick({ 'x-tier': 'gold' }, '/v1/completions')).toBe('default')
    expect(pick({ 'x-user': 'team-42' })).toBe('regex')
    expect(pick({ 'x-user': 'team-x' })).toBe('default')
  })

  it('oldest route wins on duplicate names and falls through when its rules do not match', () => {
    const older = route('older', {
      modelName: 'dup',
      creationTimestamp: '2025-01-01T00:00:00Z',
      rules: [
        {
          name: 'only-gold',
          match: { headers: [{ name: 'x-tier', match: { kind: 'exact', value: 'gold' } }] },
          targets: [{ server: a.key, weight: 1 }],
        },
      ],
    })
    const younger = route('younger', {
      modelName: 'dup',
      rules: [{ name: 'any', targets: [{ server: b.key, weight: 1 }] }],
    })
    const t = new RouteTable(snapshot([older, younger], [a, b]))
    const gold = t.resolve(req('dup', { 'x-tier': 'gold' }))
    expect(gold.kind === 'chain' && gold.decision.route.name).toBe('older')
    const plain = t.resolve(req('dup'))
    expect(plain.kind === 'chain' && plain.decision.route.name).toBe('younger')
  })

  it('reports no-rule when a known model matches no rule', () => {
    const t = new RouteTable(
      snapshot(
        [
          route('r', {
            modelName: 'm',
            rules: [
              {
                name: 'x',
                match: { headers: [], bodyModel: 'other' },
                targets: [{ server: a.key, weight: 1 }],
              },
            ],
          }),
        ],
        [a],
      ),
    )
    expect(t.resolve({ model: 'm', path: '/v1/completions', header: noHeaders }).kind).toBe(
      'no-rule',
    )
  })

  it('splits by weight (90/10) following the random source', () => {
    let x = 0
    const seq = () => {
      x = (x + 0.001) % 1
      return x
    }
    const t = new RouteTable(
      snapshot(
        [
          route('r', {
            modelName: 'm',
            rules: [
              {
                name: 'canary',
                targets: [
                  { server: a.key, weight: 90 },
                  { server: b.key, weight: 10 },
                ],
              },
            ],
          }),
        ],
        [a, b],
      ),
      seq,
    )
    const counts: Record<string, number> = {}
    for (let i = 0; i < 1000; i++) {
      const r = t.resolve(req('m'))
      const t0 = r.kind === 'chain' ? r.decision.targets[0] : undefined
      if (t0?.kind === 'server') counts[t0.server.name] = (counts[t0.server.name] ?? 0) + 1
    }
    expect(counts['a']).toBe(900)
    expect(counts['b']).toBe(100)
  })

  it('drops zero-weight and missing-server targets, and rules left without targets', () => {
    const t = new RouteTable(
      snapshot(
        [
          route('r', {
            modelName: 'm',
            rules: [
              {
                name: 'dead',
                targets: [
                  { server: 'default/missing', weight: 5 },
                  { server: a.key, weight: 0 },
                ],
              },
            ],
          }),
        ],
        [a],
      ),
    )
    expect(t.resolve(req('m')).kind).toBe('unknown-model')
    expect(t.models).toEqual([])
  })
})

describe('RouteTable: providers and fallback (chain decisions)', () => {
  const p = {
    key: 'default/openai',
    namespace: 'default',
    name: 'openai',
    type: 'OpenAI',
    model: 'gpt-4o-mini',
    baseURL: 'https://api.openai.com/v1',
    insecureSkipVerify: false,
    headers: {},
    trafficPolicy: a.trafficPolicy,
  } as const
  function table(rules: Parameters<typeof route>[1]['rules'], random = () => 0): RouteTable {
    const s = snapshot([route('r', { modelName: 'm', rules })], [a, b])
    return new RouteTable({ ...s, providers: { [p.key]: p } }, random)
  }

  it('a plain server pick is a chain of one server target without fallback', () => {
    const r = table([{ name: 'x', targets: [{ server: a.key, weight: 1 }] }]).resolve(req('m'))
    if (r.kind !== 'chain') throw new Error(r.kind)
    expect(r.decision.plain).toBe(true)
    expect(r.decision.targets.map((t) => [t.kind, t.upstreamModel])).toEqual([
      ['server', 'org/base-model'],
    ])
    expect(r.decision.fallbackOn.size).toBe(0)
  })

  it('a provider pick is a chain with the provider model', () => {
    const r = table(
      [
        {
          name: 'x',
          targets: [
            { server: a.key, weight: 50 },
            { provider: p.key, weight: 50 },
          ],
        },
      ],
      () => 0.9,
    ).resolve(req('m'))
    expect(r.kind).toBe('chain')
    if (r.kind !== 'chain') return
    expect(r.decision.targets.map((t) => [t.kind, t.upstreamModel])).toEqual([
      ['provider', 'gpt-4o-mini'],
    ])
    expect(r.decision.fallbackOn.size).toBe(0)
  })

  it('fallback targets follow the weighted pick in order, the pick not repeated', () => {
    const r = table([
      {
        name: 'x',
        targets: [{ server: a.key, weight: 1 }],
        fallback: {
          targets: [{ server: a.key }, { provider: p.key }, { server: b.key }],
          on: ['429', '5xx'],
        },
      },
    ]).resolve(req('m'))
    if (r.kind !== 'chain') throw new Error(r.kind)
    expect(
      r.decision.targets.map((t) => (t.kind === 'server' ? t.server.key : t.provider.key)),
    ).toEqual([a.key, p.key, b.key])
    expect([...r.decision.fallbackOn].sort()).toEqual(['429', '5xx'])
    expect(r.decision.targets[0]?.upstreamModel).toBe('org/base-model')
  })
})

describe('RouteTable: regexes', () => {
  it('header regexes run in linear time: ^(a+)+$ against a hostile header answers', async () => {
    // In a worker, so a backtracking engine (V8's: 2^40 steps here) shows up as this test's own
    // deadline failing instead of a blocked test process.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads')
      require('tsx/cjs/api').register()
      const { RouteTable } = require(workerData.router)
      const h = require(workerData.helpers)
      const a = h.server('a', [h.endpoint('a-0', '127.0.0.2', 8000)])
      const t = new RouteTable(h.snapshot([h.route('r', { modelName: 'm', rules: [{ name: 'evil',
        match: { headers: [{ name: 'x-user', match: { kind: 'regex', value: '^(a+)+$' } }] },
        targets: [{ server: a.key, weight: 1 }] }] })], [a]))
      const kind = (v) => t.resolve({ model: 'm', path: '/v1/chat/completions',
        header: (n) => (n === 'x-user' ? v : undefined) }).kind
      parentPort.postMessage([kind('a'.repeat(30) + '!'), kind('a'.repeat(40) + '!'), kind('a'.repeat(31))])`
    const worker = new Worker(code, {
      eval: true,
      workerData: {
        router: fileURLToPath(new URL('./router.ts', import.meta.url)),
        helpers: fileURLToPath(new URL('../test/helpers/snapshot.ts', import.meta.url)),
      },
    })
    try {
      const result = await new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
        setTimeout(() => reject(new Error('regex match did not finish: backtracking')), 15_000)
      })
      expect(result).toEqual(['no-rule', 'no-rule', 'chain'])
    } finally {
      await worker.terminate()
    }
  })
})
