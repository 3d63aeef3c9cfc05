// Identity asserted by a proxy in front of the gateway (Nginx, Envoy, an SSO sidecar) that has
// already authenticated the user: `x-user-id`, `x-tenant-id`, `x-tier`, `x-user-roles`. Anyone can
// send those headers, so they count only from a trusted source — a peer address in the configured
// CIDRs and/or a shared-secret header only the proxy knows (every configured condition must
// hold). From anyone else they are dropped: never used, never forwarded.
import { createHash, timingSafeEqual } from 'node:crypto'
import { BlockList, isIPv4, isIPv6 } from 'node:net'
import type { SnapshotTrustedHeaders } from '../../../api/snapshot.js'
import type { Identity } from '../identity.js'
import { roleList } from './claims.js'

export type TrustedHeaderResult =
  /** None of the identity headers were sent. */
  | { readonly kind: 'absent' }
  /** Sent by a peer that is not trusted: ignored (and stripped). */
  | { readonly kind: 'untrusted' }
  | { readonly kind: 'identity'; readonly identity: Identity }

const ABSENT: TrustedHeaderResult = { kind: 'absent' }
const UNTRUSTED: TrustedHeaderResult = { kind: 'untrusted' }

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** `::ffff:10.0.0.1` (IPv4 on a dual-stack socket) → `10.0.0.1`. */
function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && isIPv4(a.slice(7)) ? a.slice(7) : a
}

export class TrustedHeaders {
  readonly config: SnapshotTrustedHeaders
  /** Every header this source reads, to be removed before the request goes upstream. */
  readonly headerNames: readonly string[]
  private readonly sources: BlockList | undefined
  /** sha256 of the shared secret; undefined when configured but the entry is missing. */
  private readonly secret: Buffer | undefined
  private readonly needsSecret: boolean

  constructor(config: SnapshotTrustedHeaders, sharedSecret: string | undefined) {
    this.config = config
    const h = config.headers
    this.headerNames = [
      h.subject,
      h.tenant,
      h.tier,
      h.roles,
      ...(config.sharedSecret ? [config.sharedSecret.header] : []),
    ]
    if (config.sourceAddresses.length > 0) {
      const bl = new BlockList()
      for (const cidr of config.sourceAddresses) {
        const [addr = '', bits] = cidr.split('/')
        const family = isIPv6(addr) ? 'ipv6' : 'ipv4'
        if (bits === undefined) bl.addAddress(addr, family)
        else bl.addSubnet(addr, Number(bits), family)
      }
      this.sources = bl
    }
    this.needsSecret = config.sharedSecret !== undefined
    this.secret =
      sharedSecret === undefined || sharedSecret === '' ? undefined : digest(sharedSecret)
  }

  private trusted(header: (n: string) => string | undefined, remote: string | undefined): boolean {
    if (this.sources !== undefined) {
      if (remote === undefined) return false
      const a = plainAddress(remote)
      if (!this.sources.check(a, isIPv6(a) ? 'ipv6' : 'ipv4')) return false
    }
    if (this.needsSecret) {
      // A configured secret whose entry is missing trusts nobody (fail closed).
      const presented = this.config.sharedSecret
        ? header(this.config.sharedSecret.header)
        : undefined
      if (this.secret === undefined || presented === undefined) return false
      if (!timingSafeEqual(digest(presented), this.secret)) return false
    }
    return true
  }

  check(
    header: (n: string) => string | undefined,
    remoteAddress: string | undefined,
    tierOf: (t: string | undefined) => string | undefined,
  ): TrustedHeaderResult {
    const h = this.config.headers
    const subject = header(h.subject)
    const tenant = header(h.tenant)
    const tierName = header(h.tier)
    const roles = header(h.roles)
    if (
      subject === undefined &&
      tenant === undefined &&
      tierName === undefined &&
      roles === undefined
    )
      return ABSENT
    if (!this.trusted(header, remoteAddress)) return UNTRUSTED
    // A trusted proxy that sends attributes but no user has not authenticated anyone.
    if (subject === undefined || subject === '') return ABSENT
    const tier = tierOf(tierName)
    return {
      kind: 'identity',
      identity: {
        method: 'trusted-header',
        subject: `header:${subject}`,
        tenant: tenant !== undefined && tenant !== '' ? tenant : 'trusted-proxy',
        ...(tier !== undefined ? { tier } : {}),
        roles: roleList(roles?.replaceAll(',', ' ')),
        source: 'trusted-headers',
      },
    }
  }
}
