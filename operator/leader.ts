// Leader election with a coordination.k8s.io/v1 Lease (client-node has no elector; this follows
// client-go's leaderelection). Every replica runs informers and serves the push channel; only
// the leader writes (snapshot ConfigMap, status, Events).
// - A candidate takes the Lease when it is free, released, held by itself (a restarted process
//   with the same identity resumes at once), or not renewed for `leaseDuration` as measured on
//   the candidate's own clock from when it last saw the record change (no trust in other clocks).
// - Writes carry the Lease's resourceVersion, so two candidates never both win a round.
// - The leader renews every `retryPeriod`; if it cannot renew for `renewDeadline` (< lease
//   duration) it steps down before anyone else may take over, so two writers never overlap.
// - stop() releases the Lease (holder cleared) so a successor takes over without waiting.
import {
  CoordinationV1Api,
  type KubeConfig,
  type V1Lease,
  V1MicroTime,
} from '@kubernetes/client-node'
import { jittered, sleep, withTimeout } from './backoff.js'
import { isConflict, isNotFound } from './errors.js'
import { errorText, type Logger, silentLogger } from './log.js'

export interface LeaderElectionOptions {
  readonly kc: KubeConfig
  readonly namespace: string
  readonly name: string
  readonly identity: string
  /** How long a Lease stays valid without renewal (client-go default 15 s). */
  readonly leaseDurationMs: number
  /** The leader steps down after failing to renew for this long (default 10 s). */
  readonly renewDeadlineMs: number
  /** Time between attempts (default 2 s). */
  readonly retryPeriodMs: number
  readonly log?: Logger
  readonly onStartedLeading: () => void
  readonly onStoppedLeading: () => void
}

type Outcome = 'leader' | 'follower'

export class LeaderElector {
  private readonly o: LeaderElectionOptions
  private readonly api: CoordinationV1Api
  private readonly log: Logger
  private leading = false
  private stopped = true
  private loopDone: Promise<void> | undefined
  private readonly wake = new AbortController()
  private lastRenew = 0
  private observedRv: string | undefined
  private observedAt = 0
  private holder: string | undefined
  private deadlineTimer: NodeJS.Timeout | undefined

  constructor(o: LeaderElectionOptions) {
    this.o = o
    this.api = o.kc.makeApiClient(CoordinationV1Api)
    this.log = o.log ?? silentLogger
  }

  get isLeader(): boolean {
    return this.leading
  }

  /** The holder seen on the last read (for logs and tests). */
  get currentHolder(): string | undefined {
    return this.holder
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.loopDone = this.loop()
    // Independent of the loop, whose request may hang on a dead connection (client-node 1.4
    // requests have no timeout): a leader that has not renewed within the deadline stops.
    this.deadlineTimer = setInterval(
      () => this.checkDeadline(),
      Math.max(50, this.o.retryPeriodMs / 2),
    )
    this.deadlineTimer.unref()
  }

  private checkDeadline(): void {
    if (this.leading && Date.now() - this.lastRenew > this.o.renewDeadlineMs) {
      this.log('warn', 'could not renew the lease within the renew deadline', {
        renewDeadlineMs: this.o.renewDeadlineMs,
      })
      this.setLeading(false)
    }
  }

  /** Stops campaigning; a leader releases the Lease (best effort, bounded by `timeoutMs`). */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.deadlineTimer)
    this.wake.abort()
    await this.loopDone
    if (!this.leading) return
    this.setLeading(false)
    await withTimeout(this.release(), timeoutMs, 'lease release').catch((e: unknown) =>
      this.log('warn', 'releasing the lease failed', { error: errorText(e) }),
    )
  }

  private setLeading(v: boolean): void {
    if (this.leading === v) return
    this.leading = v
    this.log('info', v ? 'became leader' : 'stopped leading', {
      lease: `${this.o.namespace}/${this.o.name}`,
      identity: this.o.identity,
    })
    if (v) this.o.onStartedLeading()
    else this.o.onStoppedLeading()
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let outcome: Outcome | 'error'
      try {
        outcome = await this.withDeadline(this.tryAcquireOrRenew())
      } catch (e) {
        outcome = 'error'
        this.log('warn', 'lease acquire/renew failed', { error: errorText(e) })
      }
      if (this.stopped) break
      const now = Date.now()
      if (outcome === 'leader') {
        this.lastRenew = now
        this.setLeading(true)
      } else if (outcome === 'follower') {
        // Someone else holds a valid Lease (or won the race): never keep writing.
        this.setLeading(false)
      } else {
        this.checkDeadline()
      }
      const wait = this.leading ? this.o.retryPeriodMs : jittered(this.o.retryPeriodMs, 0.2)
      await sleep(wait, this.wake.signal)
    }
  }

  /** One attempt may not outlast the renew deadline; a hung request is abandoned. */
  private withDeadline<T>(p: Promise<T>): Promise<T> {
    return withTimeout(p, this.o.renewDeadlineMs, 'lease request')
  }

  private spec(holder: string | undefined, prior: V1Lease['spec']): NonNullable<V1Lease['spec']> {
    const now = new V1MicroTime()
    const same = holder !== undefined && prior?.holderIdentity === holder
    return {
      ...(holder !== undefined ? { holderIdentity: holder } : {}),
      leaseDurationSeconds: holder === undefined ? 1 : Math.ceil(this.o.leaseDurationMs / 1000),
      acquireTime: same && prior?.acquireTime !== undefined ? prior.acquireTime : now,
      renewTime: now,
      leaseTransitions: (prior?.leaseTransitions ?? 0) + (same || holder === undefined ? 0 : 1),
    }
  }

  private async tryAcquireOrRenew(): Promise<Outcome> {
    const { namespace, name, identity } = this.o
    let lease: V1Lease
    try {
      lease = await this.api.readNamespacedLease({ name, namespace })
    } catch (e) {
      if (!isNotFound(e)) throw e
      try {
        const created = await this.api.createNamespacedLease({
          namespace,
          body: { metadata: { name, namespace }, spec: this.spec(identity, undefined) },
        })
        this.observe(created)
        return 'leader'
      } catch (ce) {
        if (isConflict(ce)) return 'follower'
        throw ce
      }
    }
    this.observe(lease)
    const holder = lease.spec?.holderIdentity
    const durationMs = (lease.spec?.leaseDurationSeconds ?? 15) * 1000
    if (holder && holder !== identity && Date.now() < this.observedAt + durationMs) {
      return 'follower'
    }
    try {
      const updated = await this.api.replaceNamespacedLease({
        name,
        namespace,
        body: { ...lease, spec: this.spec(identity, lease.spec) },
      })
      this.observe(updated)
      return 'leader'
    } catch (e) {
      if (isConflict(e)) return 'follower'
      throw e
    }
  }

  private observe(lease: V1Lease): void {
    this.holder = lease.spec?.holderIdentity
    const rv = lease.metadata?.resourceVersion
    if (rv !== this.observedRv) {
      this.observedRv = rv
      this.observedAt = Date.now()
    }
  }

  private async release(): Promise<void> {
    const { namespace, name, identity } = this.o
    const lease = await this.api.readNamespacedLease({ name, namespace })
    if (lease.spec?.holderIdentity !== identity) return
    await this.api.replaceNamespacedLease({
      name,
      namespace,
      body: { ...lease, spec: this.spec(undefined, lease.spec) },
    })
    this.log('info', 'released the lease', { lease: `${namespace}/${name}` })
  }
}
