// Typed errors with stable codes, and helpers to read HTTP status codes off client-node errors.
import { ApiException } from '@kubernetes/client-node'

export type OperatorErrorCode =
  /** The gzipped snapshot does not fit the ConfigMap size limit. */
  | 'SNAPSHOT_TOO_LARGE'
  /** Someone else changed the snapshot ConfigMap between our read and our write. */
  | 'CONFIGMAP_CONFLICT'
  /** The snapshot ConfigMap holds something we cannot decode. */
  | 'CONFIGMAP_INVALID'
  /** A watch delivered nothing within its deadline; the informer restarts it. */
  | 'WATCH_STALLED'
  /** The API server answered a watch with an error status. */
  | 'WATCH_FAILED'
  /** No usable Kubernetes client configuration. */
  | 'KUBECONFIG'
  /** Applying the data plane's credentials Secret failed (the message never holds a value). */
  | 'CREDENTIALS_WRITE_FAILED'
  /** The push channel's token Secret holds no usable token, or could not be created. */
  | 'PUSH_TOKEN'

export class OperatorError extends Error {
  override readonly name = 'OperatorError'
  readonly code: OperatorErrorCode

  constructor(code: OperatorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/**
 * HTTP status of a failed API call: `ApiException.code` from generated clients, `statusCode`
 * from client-node's Watch, or the `code` of a watch ERROR event's Status object.
 */
export function httpStatus(e: unknown): number | undefined {
  if (e instanceof ApiException) return e.code
  if (typeof e === 'object' && e !== null) {
    const sc = (e as { statusCode?: unknown }).statusCode
    if (typeof sc === 'number') return sc
  }
  return undefined
}

export const isNotFound = (e: unknown): boolean => httpStatus(e) === 404
export const isConflict = (e: unknown): boolean => httpStatus(e) === 409
export const isGone = (e: unknown): boolean => httpStatus(e) === 410
