// Shared parts of the auth and rate-limit suites: config documents (ModelServer, StaticEndpoints,
// ModelRoute, GatewayPolicy) and a small identity provider on loopback that serves a JWKS, an OIDC
// discovery document and an RFC 7662 introspection endpoint, counting every call.
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'

type Obj = Record<string, unknown>
const API = 'networking.matrixinfer.ai/v1alpha1'

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

export function modelServer(name: string, model: string, port: number): Obj {
  return {
    apiVersion: API,
    kind: 'ModelServer',
    metadata: { name },
    spec: {
      model,
      inferenceEngine: 'vLLM',
      workloadSelector: { matchLabels: { app: name } },
      workloadPort: { port },
    },
  }
}

export function endpoints(name: string, address: string, port: number): Obj {
  return {
    apiVersion: 'standalone.infer-gateway.io/v1alpha1',
    kind: 'StaticEndpoints',
    metadata: { name },
    endpoints: [{ name: `${name}-0`, address, port }],
  }
}

export function modelRoute(name: string, modelName: string, server: string, extra: Obj = {}): Obj {
  return {
    apiVersion: API,
    kind: 'ModelRoute',
    metadata: { name },
    spec: { modelName, rules: [{ targetModels: [{ modelServerName: server }] }], ...extra },
  }
}

export function gatewayPolicy(spec: Obj): Obj {
  return { apiVersion: API, kind: 'GatewayPolicy', metadata: { name: 'gateway' }, spec }
}

/** JSON is YAML; one document per object. */
export function yamlDocs(docs: readonly Obj[]): string {
  return docs.map((d) => JSON.stringify(d, null, 2)).join('\n---\n')
}

export interface SigningKey {
  readonly kid: string
  readonly alg: 'RS256' | 'ES256'
  readonly privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']
  readonly publicJwk: JWK
  /** SPKI PEM of the public key (what an HS/RS confusion attack "signs" with). */
  readonly publicPem: string
}

export async function signingKey(
  kid: string,
  alg: 'RS256' | 'ES256' = 'RS256',
): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  const spki = Buffer.from(await crypto.subtle.exportKey('spki', publicKey)).toString('base64')
  const publicPem = `-----BEGIN PUBLIC KEY-----\n${spki.match(/.{1,64}/g)?.join('\n')}\n-----END PUBLIC KEY-----\n`
  return { kid, alg, privateKey, publicJwk, publicPem }
}

export async function signJwt(key: SigningKey, claims: Obj, header: Obj = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey)
}

function b64url(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url')
}

/** An unsecured JWT (`alg: none`): what no gateway may accept. */
export function unsignedJwt(claims: Obj): string {
  return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`
}

/** HS256 with the issuer's RSA public key as the HMAC secret (the classic key-confusion attack). */
export async function confusedJwt(key: SigningKey, claims: Obj): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'JWT' })
    .sign(new TextEncoder().encode(key.publicPem))
}

export interface Idp {
  readonly url: string
  /** Issuer of tokens verified through OIDC discovery (`<url>/oidc`). */
  readonly oidcIssuer: string
  readonly keys: SigningKey[]
  /** Opaque tokens the introspection endpoint knows: token → response. */
  readonly tokens: Map<string, Obj>
  readonly clientId: string
  readonly clientSecret: string
  readonly counts: { jwks: number; discovery: number; introspect: number; badClient: number }
  close(): Promise<void>
}

export async function startIdp(host: string, clientSecret: string): Promise<Idp> {
  const keys: SigningKey[] = []
  const tokens = new Map<string, Obj>()
  const counts = { jwks: 0, discovery: 0, introspect: 0, badClient: 0 }
  const clientId = 'gateway'
  let base = ''
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(body))
      }
      if (req.url === '/jwks') {
        counts.jwks++
        return send(200, { keys: keys.map((k) => k.publicJwk) })
      }
      if (req.url === '/oidc/.well-known/openid-configuration') {
        counts.discovery++
        return send(200, { issuer: `${base}/oidc`, jwks_uri: `${base}/jwks` })
      }
      if (req.url === '/introspect' && req.method === 'POST') {
        counts.introspect++
        const expected = `Basic ${Buffer.from(`${clientId}:${encodeURIComponent(clientSecret)}`).toString('base64')}`
        if (req.headers.authorization !== expected) {
          counts.badClient++
          return send(401, { error: 'invalid_client' })
        }
        const token = new URLSearchParams(Buffer.concat(chunks).toString()).get('token') ?? ''
        return send(200, tokens.get(token) ?? { active: false })
      }
      send(404, {})
    })
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  base = `http://${host}:${(server.address() as AddressInfo).port}`
  return {
    url: base,
    oidcIssuer: `${base}/oidc`,
    keys,
    tokens,
    clientId,
    clientSecret,
    counts,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
