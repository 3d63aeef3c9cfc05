// Kubernetes Events (events.k8s.io/v1) on condition transitions, so `kubectl describe mr x` shows
// when and why a route became (un)ready. Best effort: an Event that cannot be written is logged
// and counted, never retried (status carries the truth; Events are the history).
import { EventsV1Api, type KubeConfig, V1MicroTime } from '@kubernetes/client-node'
import { API_VERSION } from '../api/index.js'
import { withTimeout } from './backoff.js'
import { errorText, type Logger } from './log.js'
import type { OperatorMetrics } from './metrics.js'
import type { Transition } from './status.js'

export const REPORTING_CONTROLLER = 'infer-gateway.io/operator'

export interface EventSubject {
  readonly kind: 'ModelRoute' | 'ModelServer' | 'GatewayPolicy' | 'ExternalModelProvider'
  readonly namespace: string
  readonly name: string
  readonly uid?: string | undefined
  readonly resourceVersion?: string | undefined
  /** Default ours; Kthena's objects are regarded in their own group. */
  readonly apiVersion?: string | undefined
}

let seq = 0

/**
 * client-go's scheme `<object>.<hex time>` (generateName would need a trailing "-"), plus a
 * counter so two Events in one millisecond differ. Object names are DNS subdomains already.
 */
export function eventName(object: string, now = Date.now()): string {
  seq = (seq + 1) % 0x10000
  const suffix = `.${now.toString(16)}${seq.toString(16).padStart(4, '0')}`
  return `${object.slice(0, 253 - suffix.length).replace(/[.-]+$/, '')}${suffix}`
}

export class EventRecorder {
  private readonly api: EventsV1Api
  private readonly identity: string
  private readonly log: Logger
  private readonly metrics: OperatorMetrics
  /** Last status an Event was emitted for, per object and condition: no duplicates from stale caches. */
  private readonly last = new Map<string, string>()

  private readonly timeoutMs: number

  constructor(
    kc: KubeConfig,
    identity: string,
    log: Logger,
    metrics: OperatorMetrics,
    timeoutMs = 30_000,
  ) {
    this.timeoutMs = timeoutMs
    this.api = kc.makeApiClient(EventsV1Api)
    // reportingInstance is limited to 128 characters.
    this.identity = identity.slice(0, 128)
    this.log = log
    this.metrics = metrics
  }

  async record(subject: EventSubject, t: Transition): Promise<void> {
    const memo = `${subject.kind}/${subject.namespace}/${subject.name}/${t.type}`
    if (this.last.get(memo) === t.to) return
    this.last.set(memo, t.to)
    // Ready=True and Accepted=True are good news; anything else needs a look.
    const type = t.to === 'True' ? 'Normal' : 'Warning'
    const note = `${t.type} ${t.from ?? 'unset'} -> ${t.to}: ${t.message}`
    try {
      await withTimeout(
        this.api.createNamespacedEvent({
          namespace: subject.namespace,
          body: {
            metadata: { name: eventName(subject.name), namespace: subject.namespace },
            eventTime: new V1MicroTime(),
            reportingController: REPORTING_CONTROLLER,
            reportingInstance: this.identity,
            action: 'Reconcile',
            reason: t.reason.slice(0, 128),
            note: note.length > 1024 ? `${note.slice(0, 1021)}...` : note,
            type,
            regarding: {
              apiVersion: subject.apiVersion ?? API_VERSION,
              kind: subject.kind,
              name: subject.name,
              namespace: subject.namespace,
              ...(subject.uid !== undefined ? { uid: subject.uid } : {}),
              ...(subject.resourceVersion !== undefined
                ? { resourceVersion: subject.resourceVersion }
                : {}),
            },
          },
        }),
        this.timeoutMs,
        'event write',
      )
      this.metrics.events.inc({ type, result: 'success' })
    } catch (e) {
      this.metrics.events.inc({ type, result: 'error' })
      this.log('warn', 'could not write event', {
        object: `${subject.kind}/${subject.namespace}/${subject.name}`,
        reason: t.reason,
        error: errorText(e),
      })
    }
  }

  /** Forget an object's memo (it was deleted; a re-created one starts fresh). */
  forget(kind: string, key: string): void {
    const prefix = `${kind}/${key}/`
    for (const k of this.last.keys()) if (k.startsWith(prefix)) this.last.delete(k)
  }
}
