// The push channel's bearer token (docs/install.md, "Push channel"). The snapshot names every
// route, server and pod address: only data planes should read it. A NetworkPolicy keeps other
// pods off the push port, and this token guards every listener that serves /v1/snapshot (the
// operator's metrics port serves it too). It lives in a Secret in the operator's namespace: the
// first operator replica to start creates it with 256 random bits, the others read it; data
// planes mount the same Secret and send it (`--push-token-file`).
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node'
import { isConflict, isNotFound, OperatorError } from './errors.js'

/** The Secret's key holding the token (the data plane mounts it as a file of that name). */
export const PUSH_TOKEN_KEY = 'token'

/** The token in Secret `name`, creating the Secret if it does not exist yet. */
export async function ensurePushToken(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api)
  // Two rounds: a replica that loses the create race reads the winner's token.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const s = await core.readNamespacedSecret({ name, namespace })
      const b64 = s.data?.[PUSH_TOKEN_KEY]
      const token = b64 !== undefined ? Buffer.from(b64, 'base64').toString('utf8').trim() : ''
      if (token.length < 16)
        throw new OperatorError(
          'PUSH_TOKEN',
          `Secret ${namespace}/${name}: data.${PUSH_TOKEN_KEY} must hold a token of at least 16 characters`,
        )
      return token
    } catch (e) {
      if (!isNotFound(e)) throw e
    }
    const token = randomBytes(32).toString('base64url')
    try {
      await core.createNamespacedSecret({
        namespace,
        body: {
          metadata: {
            name,
            namespace,
            labels: {
              'app.kubernetes.io/name': 'infer-gateway',
              'app.kubernetes.io/component': 'operator',
            },
          },
          type: 'Opaque',
          data: { [PUSH_TOKEN_KEY]: Buffer.from(token).toString('base64') },
        },
      })
      return token
    } catch (e) {
      if (!isConflict(e)) throw e
    }
  }
  throw new OperatorError('PUSH_TOKEN', `Secret ${namespace}/${name}: could not create or read it`)
}

/** `Authorization: Bearer <token>` matches, in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  if (!m?.[1]) return false
  const got = Buffer.from(m[1])
  const want = Buffer.from(token)
  return got.length === want.length && timingSafeEqual(got, want)
}
