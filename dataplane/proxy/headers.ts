// Request headers sent to a self-hosted engine, shared by the plain and the fallback-chain paths.
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

export function upstreamHeaders(
  h: Record<string, string>,
  requestId: string,
  strip?: ReadonlySet<string>,
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k in h) {
    const v = h[k]
    // `strip`: the client's gateway credential and proxy identity headers never reach engines.
    if (v !== undefined && !DROP_REQUEST_HEADERS.has(k) && !strip?.has(k)) out[k] = v
  }
  out['x-request-id'] = requestId
  out['content-type'] = 'application/json'
  return out
}
