// Request headers sent to a self-hosted engine (serve/server-target.ts).
const DROP_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
])

/** Headers the gateway writes itself: a client's copy (or underscore variant) never goes through. */
const SET_BY_GATEWAY = new Set(['x-request-id', 'content-type', 'x-forwarded-for'])

/**
 * The client's headers as an engine should see them. Dropped: hop-by-hop headers, every header
 * the client's `Connection` names (RFC 9110 §7.6.1), the names in `strip` (the client's gateway
 * credential and trusted-proxy identity headers) and their underscore spellings: servers behind
 * CGI-style conventions (WSGI, some Python and Go stacks) read `x_user_id` as `x-user-id`, so a
 * client could otherwise smuggle an identity past the strip. `X-Forwarded-For` is the client's
 * value (if any) with the peer address appended, as a proxy does; engines that log or limit by
 * client address see the real peer last.
 */
export function upstreamHeaders(
  h: Readonly<Record<string, string | readonly string[] | undefined>>,
  requestId: string,
  strip?: ReadonlySet<string>,
  peerAddress?: string,
): Record<string, string> {
  const out: Record<string, string> = {}
  const connection = joined(h['connection'])
  const named = connection !== undefined ? connectionTokens(connection) : undefined
  for (const k in h) {
    const v = joined(h[k])
    if (v === undefined) continue
    // Header names reach here lower-cased; only names with `_` need the second spelling checked.
    const n = k.includes('_') ? k.replaceAll('_', '-') : k
    if (DROP_REQUEST_HEADERS.has(n) || strip?.has(n) || named?.has(n)) continue
    if (SET_BY_GATEWAY.has(n)) continue
    out[k] = v
  }
  const xff = joined(h['x-forwarded-for'])
  if (peerAddress !== undefined)
    out['x-forwarded-for'] = xff ? `${xff}, ${peerAddress}` : peerAddress
  else if (xff !== undefined) out['x-forwarded-for'] = xff
  out['x-request-id'] = requestId
  out['content-type'] = 'application/json'
  return out
}

/** A multi-valued header as one value (`, `-joined, as Node joins repeated headers). */
function joined(v: string | readonly string[] | undefined): string | undefined {
  return typeof v === 'string' || v === undefined ? v : v.join(', ')
}

/** Header names listed in a `Connection` value, lower-cased (`close`/`keep-alive` included). */
function connectionTokens(v: string): ReadonlySet<string> | undefined {
  // What nearly every client sends names no header: no split, trim or case folding per request.
  if (v === 'keep-alive' || v === 'close' || v === 'Keep-Alive') return undefined
  let out: Set<string> | undefined
  for (const t of v.split(',')) {
    const name = t.trim().toLowerCase().replaceAll('_', '-')
    if (name === '' || name === 'close' || name === 'keep-alive') continue
    out ??= new Set()
    out.add(name)
  }
  return out
}
