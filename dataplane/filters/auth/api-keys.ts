// API keys. The policy lists keys by name with a tenant, tier and allowed models; the key itself
// is never stored: the credentials Secret holds its sha256 (lowercase hex, optionally prefixed
// `sha256:`). A presented key is hashed and looked up by digest; the match is confirmed with a
// constant-time comparison of the digests. The lookup itself can only leak timing about digests
// of attacker-chosen inputs, which (sha256 being preimage-resistant) says nothing about any key.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { SnapshotApiKey } from '../../../api/snapshot.js'
import type { Identity } from '../identity.js'
import type { SecretLookup } from '../secrets.js'

const HEX_DIGEST = /^(?:sha256:)?([0-9a-fA-F]{64})$/

export interface ApiKeyProblem {
  readonly key: string
  readonly entry: string
  readonly problem: 'missing' | 'not-a-sha256-digest' | 'duplicate-digest'
}

interface Entry {
  readonly digest: Buffer
  readonly identity: Identity
}

export function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

export class ApiKeyTable {
  private readonly byDigest = new Map<string, Entry>()
  readonly problems: readonly ApiKeyProblem[]

  constructor(
    keys: readonly SnapshotApiKey[],
    secrets: SecretLookup,
    tierOf: (tier: string | undefined) => string | undefined,
  ) {
    const problems: ApiKeyProblem[] = []
    for (const k of keys) {
      const raw = secrets.get(k.secretKey)
      if (raw === undefined) {
        // A key whose entry is gone is revoked: deleting the entry is a way to revoke.
        problems.push({ key: k.name, entry: k.secretKey, problem: 'missing' })
        continue
      }
      const hex = HEX_DIGEST.exec(raw.trim())?.[1]?.toLowerCase()
      if (hex === undefined) {
        problems.push({ key: k.name, entry: k.secretKey, problem: 'not-a-sha256-digest' })
        continue
      }
      if (this.byDigest.has(hex)) {
        problems.push({ key: k.name, entry: k.secretKey, problem: 'duplicate-digest' })
        continue
      }
      const tier = tierOf(k.tier)
      this.byDigest.set(hex, {
        digest: Buffer.from(hex, 'hex'),
        identity: {
          method: 'api-key',
          subject: `key:${k.name}`,
          tenant: k.tenant,
          ...(tier !== undefined ? { tier } : {}),
          roles: k.roles,
          ...(k.models !== undefined ? { models: new Set(k.models) } : {}),
          source: k.name,
        },
      })
    }
    this.problems = problems
  }

  get size(): number {
    return this.byDigest.size
  }

  /** The key's identity, or undefined when no configured key has this value. */
  authenticate(presented: string): Identity | undefined {
    const digest = createHash('sha256').update(presented).digest()
    const e = this.byDigest.get(digest.toString('hex'))
    if (e === undefined || !timingSafeEqual(digest, e.digest)) return undefined
    return e.identity
  }
}
