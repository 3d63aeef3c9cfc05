import { describe, expect, it } from 'vitest'
import { CRD_NAMES, crdName, SNAPSHOT_KEY } from './crd.js'
import { gatewayPolicySchema } from './policy.js'
import { API_VERSION, modelRouteSchema, modelServerSchema } from './schema.js'

describe('CRD names', () => {
  it('use the kinds the zod schemas accept', () => {
    const meta = { name: 'x' }
    expect(
      modelRouteSchema.safeParse({
        apiVersion: API_VERSION,
        kind: CRD_NAMES.modelRoute.kind,
        metadata: meta,
        spec: { modelName: 'm', rules: [{ targetModels: [{ modelServerName: 's' }] }] },
      }).success,
    ).toBe(true)
    expect(
      modelServerSchema.safeParse({
        apiVersion: API_VERSION,
        kind: CRD_NAMES.modelServer.kind,
        metadata: meta,
        spec: {
          inferenceEngine: 'vLLM',
          workloadSelector: { matchLabels: { app: 'a' } },
          workloadPort: { port: 8000 },
        },
      }).success,
    ).toBe(true)
    expect(
      gatewayPolicySchema.safeParse({
        apiVersion: API_VERSION,
        kind: CRD_NAMES.gatewayPolicy.kind,
        metadata: meta,
        spec: {},
      }).success,
    ).toBe(true)
  })

  it('follow the Kubernetes conventions for plural, singular and list kind', () => {
    for (const n of Object.values(CRD_NAMES)) {
      expect(n.singular).toBe(n.kind.toLowerCase())
      expect(n.listKind).toBe(`${n.kind}List`)
      expect(n.plural).toMatch(new RegExp(`^${n.singular.replace(/y$/, '')}(s|ies)$`))
    }
    expect(crdName('modelServer')).toBe('modelservers.networking.matrixinfer.ai')
    // A ConfigMap key is a file name in the mounted volume.
    expect(SNAPSHOT_KEY).toMatch(/^[-._a-zA-Z0-9]+$/)
  })
})
