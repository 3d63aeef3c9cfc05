// The durable copy of the routing snapshot: one ConfigMap in the operator's namespace with the
// gzipped JSON in `binaryData[snapshot.json.gz]` (the data plane mounts it as a file). Version
// and hash are repeated as annotations so `kubectl get cm -o yaml` shows what is published.
// The ConfigMap is also how replicas agree: followers and a restarted leader read it to learn
// the latest version and content, so every replica's push channel serves the same bytes.
import { gunzipSync, gzipSync } from 'node:zlib'
import type { V1ConfigMap } from '@kubernetes/client-node'
import { SNAPSHOT_KEY } from '../api/crd.js'
import { type RoutingSnapshot, validateSnapshot } from '../api/index.js'
import { OperatorError } from './errors.js'

export const VERSION_ANNOTATION = 'infer-gateway.io/snapshot-version'
export const HASH_ANNOTATION = 'infer-gateway.io/snapshot-hash'

/**
 * ConfigMaps are capped at 1 MiB (data + binaryData); leave room for metadata. Above this the
 * snapshot is not published (and says so) rather than written in a form nobody can read.
 */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 1_000_000

export interface EncodedSnapshot {
  readonly snapshot: RoutingSnapshot
  /** Exactly what the push channel serves (JSON.stringify of the canonical snapshot). */
  readonly json: Buffer
  readonly gz: Buffer
}

export function encodeSnapshot(snapshot: RoutingSnapshot): EncodedSnapshot {
  const json = Buffer.from(JSON.stringify(snapshot))
  return { snapshot, json, gz: gzipSync(json, { level: 9 }) }
}

export function snapshotConfigMap(
  namespace: string,
  name: string,
  enc: EncodedSnapshot,
  resourceVersion?: string,
): V1ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace,
      ...(resourceVersion !== undefined ? { resourceVersion } : {}),
      labels: {
        'app.kubernetes.io/name': 'infer-gateway',
        'app.kubernetes.io/component': 'snapshot',
        'app.kubernetes.io/managed-by': 'infer-gateway-operator',
      },
      annotations: {
        [VERSION_ANNOTATION]: String(enc.snapshot.version),
        [HASH_ANNOTATION]: enc.snapshot.hash,
      },
    },
    binaryData: { [SNAPSHOT_KEY]: enc.gz.toString('base64') },
  }
}

export interface StoredSnapshot {
  readonly snapshot: RoutingSnapshot
  readonly resourceVersion: string
}

/** Decodes and validates (schema, references, content hash) the ConfigMap's snapshot. */
export function decodeSnapshotConfigMap(raw: unknown): StoredSnapshot {
  const cm = raw as {
    metadata?: { resourceVersion?: unknown; name?: unknown }
    binaryData?: Record<string, unknown>
  }
  const b64 = cm.binaryData?.[SNAPSHOT_KEY]
  if (typeof b64 !== 'string') {
    throw new OperatorError(
      'CONFIGMAP_INVALID',
      `configmap ${String(cm.metadata?.name)} has no binaryData["${SNAPSHOT_KEY}"]`,
    )
  }
  try {
    const parsed: unknown = JSON.parse(gunzipSync(Buffer.from(b64, 'base64')).toString('utf8'))
    validateSnapshot(parsed)
    // Keep the parsed JSON itself, not the validator's copy: its key order is the writer's
    // canonical order, so re-serialising it gives the writer's exact bytes.
    const snapshot = parsed as RoutingSnapshot
    const rv = cm.metadata?.resourceVersion
    return { snapshot, resourceVersion: typeof rv === 'string' ? rv : '' }
  } catch (e) {
    throw new OperatorError(
      'CONFIGMAP_INVALID',
      `configmap ${String(cm.metadata?.name)}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    )
  }
}

/**
 * The version after `previous`: +1, but never below the wall clock in seconds. The floor keeps
 * versions increasing even if the ConfigMap is lost (deleted, namespace re-created) while data
 * planes still hold a high version they would otherwise keep preferring.
 */
export function nextVersion(previous: number, nowMs: number = Date.now()): number {
  return Math.max(previous + 1, Math.floor(nowMs / 1000))
}
