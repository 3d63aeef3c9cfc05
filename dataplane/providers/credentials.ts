// Provider keys, looked up in the data plane's mounted credentials (the SecretStore the filters
// use: kubelet's atomic `..data` swaps and `--secrets-dir` files, re-read on change). The snapshot
// names the entry (`credential.secretFile`); the value lives only here, in memory, and leaves the
// process only in the header sent to that provider.
import type { SnapshotProvider } from '../../api/snapshot.js'
import type { SecretLookup } from '../filters/secrets.js'
import type { Logger } from '../log.js'

/** A SecretLookup that can be asked to re-read now (the SecretStore can). */
export interface RefreshableSecrets extends SecretLookup {
  refresh?(): Promise<boolean>
}

export type CredentialResult =
  | { readonly ok: true; readonly header: string; readonly value: string; readonly raw: string }
  | { readonly ok: true; readonly header: undefined }
  | { readonly ok: false; readonly problem: 'missing' | 'invalid' }

/** Visible ASCII only: anything else would corrupt (or split) the header. */
const HEADER_SAFE = /^[\x21-\x7e]+$/

export class ProviderCredentials {
  private readonly secrets: RefreshableSecrets | undefined
  private readonly log: Logger
  /** Entries already reported as unusable, so a broken secret logs once, not per request. */
  private readonly reported = new Set<string>()

  constructor(secrets: RefreshableSecrets | undefined, log: Logger) {
    this.secrets = secrets
    this.log = log
  }

  /** The header to send, or why there is none. Never logs the value. */
  get(p: SnapshotProvider): CredentialResult {
    const c = p.credential
    if (c === undefined) return { ok: true, header: undefined }
    const raw = this.secrets?.get(c.secretFile)
    const key = raw?.trim()
    if (key === undefined || key === '') return this.problem(p, 'missing')
    if (!HEADER_SAFE.test(key)) return this.problem(p, 'invalid')
    this.reported.delete(`${p.key}|missing`)
    this.reported.delete(`${p.key}|invalid`)
    return {
      ok: true,
      header: c.header,
      value: c.scheme === 'Bearer' ? `Bearer ${key}` : key,
      raw: key,
    }
  }

  /**
   * After the provider rejected the key: re-read the mounted files now rather than at the next
   * poll, so a rotation the provider already enforces is picked up by this very request. True when
   * the key changed.
   */
  async refreshAfterRejection(p: SnapshotProvider, used: string): Promise<boolean> {
    if (this.secrets?.refresh === undefined) return false
    await this.secrets.refresh()
    const now = this.get(p)
    return now.ok && now.header !== undefined && now.raw !== used
  }

  private problem(p: SnapshotProvider, problem: 'missing' | 'invalid'): CredentialResult {
    const id = `${p.key}|${problem}`
    if (!this.reported.has(id)) {
      this.reported.add(id)
      this.log('error', `credential for provider ${p.key} is ${problem}`, {
        provider: p.key,
        secret: p.credential?.secretRef.name,
        secretKey: p.credential?.secretRef.key,
        entry: p.credential?.secretFile,
      })
    }
    return { ok: false, problem }
  }
}
