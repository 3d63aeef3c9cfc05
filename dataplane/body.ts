// Reads a request body with a hard byte limit, so a client cannot make the gateway buffer an
// unbounded upload (Kthena reads bodies without any limit).
import { errors } from './errors.js'

export async function readBodyLimited(req: Request, limit: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > limit) throw errors.bodyTooLarge(limit)
  if (!req.body) return new Uint8Array(0)
  const reader = req.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > limit) {
      await reader.cancel().catch(() => {})
      throw errors.bodyTooLarge(limit)
    }
    chunks.push(value)
  }
  if (chunks.length === 1 && chunks[0]) return chunks[0]
  return Buffer.concat(chunks)
}

export type JsonObject = Record<string, unknown>

export function parseJsonObject(bytes: Uint8Array): JsonObject {
  let parsed: unknown
  try {
    parsed = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
    )
  } catch (e) {
    throw errors.invalidJson(e instanceof Error ? e.message : String(e))
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw errors.bodyNotObject()
  }
  return parsed as JsonObject
}
