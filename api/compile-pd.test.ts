// pdGroup / kvConnector in the compiler: served as pairs with the connector Kthena would use,
// mooncake refused by name, kvConnector without pdGroup said (it has no effect), not ignored.
import { describe, expect, it } from 'vitest'
import { compileSnapshot } from './index.js'

const server = (name: string, engine: string, extra: Record<string, unknown> = {}, pd = true) => ({
  apiVersion: 'networking.serving.volcano.sh/v1alpha1',
  kind: 'ModelServer',
  metadata: { name, namespace: 'ns' },
  spec: {
    inferenceEngine: engine,
    workloadSelector: {
      matchLabels: { app: name },
      ...(pd
        ? {
            pdGroup: {
              groupKey: 'group',
              prefillLabels: { role: 'prefill' },
              decodeLabels: { role: 'decode' },
            },
          }
        : {}),
    },
    workloadPort: { port: 8000 },
    ...extra,
  },
})
const route = {
  metadata: { name: 'r', namespace: 'ns' },
  spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 'moon' }] }] },
}

describe('compile: prefill/decode', () => {
  const { snapshot, diagnostics } = compileSnapshot({
    routes: [route],
    servers: [
      server('plain', 'vLLM'),
      server('sg', 'SGLang'),
      server('nixl', 'vLLM', { kvConnector: { type: 'nixl' } }),
      server('lm', 'vLLM', { kvConnector: { type: 'lmcache' } }),
      server('moon', 'vLLM', { kvConnector: { type: 'mooncake' } }),
      server('nopd', 'vLLM', { kvConnector: { type: 'nixl' } }, false),
    ],
    endpoints: {},
    version: 1,
  })

  it('picks the connector as Kthena does: given, else sglang for SGLang, else http', () => {
    const c = (k: string) => snapshot.servers[`ns/${k}`]?.pd?.connector
    expect([c('plain'), c('sg'), c('nixl'), c('lm')]).toEqual(['http', 'sglang', 'nixl', 'lmcache'])
  })

  it('refuses mooncake by name, and the route to it', () => {
    expect(snapshot.servers['ns/moon']).toBeUndefined()
    const d = diagnostics.filter((x) => x.reason === 'Unsupported' && x.severity === 'error')
    expect(d.map((x) => `${x.kind} ${x.key} ${x.path}`)).toEqual([
      'ModelRoute ns/r spec.rules[0].targetModels[0]',
      'ModelServer ns/moon spec.kvConnector.type',
    ])
    expect(d[1]?.message).toContain('mooncake')
  })

  it('kvConnector without pdGroup: served whole, with a warning naming the field', () => {
    expect(snapshot.servers['ns/nopd']?.pd).toBeUndefined()
    const w = diagnostics.find((x) => x.key === 'ns/nopd')
    expect(w).toMatchObject({
      severity: 'warning',
      reason: 'Unsupported',
      path: 'spec.kvConnector',
    })
  })
})
