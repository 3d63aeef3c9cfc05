import { describe, expect, it } from 'vitest'
import { compileSnapshot } from '../api/compile.js'
import { planCredentials, policyConditions, providerConditions } from './credentials.js'

const b64 = (s: string) => Buffer.from(s).toString('base64')
const policy = {
  apiVersion: 'networking.matrixinfer.ai/v1alpha1',
  kind: 'GatewayPolicy',
  metadata: { name: 'p', namespace: 'a' },
  spec: {
    credentialsSecretName: 'src',
    authentication: { apiKeys: [{ name: 'k', secretKey: 'key.k', tenant: 't' }] },
  },
}
const provider = {
  apiVersion: 'networking.matrixinfer.ai/v1alpha1',
  kind: 'ExternalModelProvider',
  metadata: { name: 'oai', namespace: 'a' },
  spec: { providerType: 'OpenAI', model: 'm', auth: { secretRef: { name: 'up', key: 'k' } } },
}

function plan(secrets: Record<string, Record<string, string>>) {
  const { snapshot, diagnostics } = compileSnapshot({
    routes: [],
    servers: [],
    endpoints: {},
    version: 0,
    policies: [policy],
    providers: [provider],
  })
  const p = planCredentials({
    snapshot,
    policies: [policy],
    lookup: (ns, name) => secrets[`${ns}/${name}`],
    target: { namespace: 'sys', name: 'creds' },
    label: 'l',
  })
  return { p, snapshot, diagnostics }
}

describe('planCredentials', () => {
  it('copies resolved values under the entry names', () => {
    const { p } = plan({ 'a/src': { 'key.k': b64('abc') }, 'a/up': { k: b64('sk') } })
    expect(Object.fromEntries(p.entries)).toEqual({
      'key.k': b64('abc'),
      provider_a_up_k: b64('sk'),
    })
    expect(p.policy?.refs).toMatchObject({ ok: true, reason: 'Resolved' })
    expect(p.providers.get('a/oai')).toMatchObject({ ok: true, reason: 'SecretResolved' })
  })

  it('reports missing Secrets, keys and unusable values without copying them', () => {
    const { p, snapshot, diagnostics } = plan({ 'a/src': { other: b64('x') }, 'a/up': { k: '' } })
    expect(p.entries.size).toBe(0)
    expect(p.policy?.refs).toMatchObject({ ok: false, reason: 'SecretKeyNotFound' })
    expect(p.providers.get('a/oai')).toMatchObject({ ok: false, reason: 'SecretValueInvalid' })
    const conds = policyConditions({ key: 'a/p', generation: 2, snapshot, diagnostics, plan: p })
    expect(conds.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'False', 'SecretKeyNotFound'],
    ])
    const pc = providerConditions({ key: 'a/oai', generation: 1, diagnostics, plan: p })
    expect(pc.map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'False', 'CredentialsNotResolved'],
      ['CredentialsResolved', 'False', 'SecretValueInvalid'],
    ])
    expect(plan({}).p.providers.get('a/oai')?.reason).toBe('SecretNotFound')
  })
})
