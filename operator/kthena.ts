// Whether Kthena's group (networking.serving.volcano.sh/v1alpha1) is served by this cluster: the
// operator watches it only then, so a cluster without Kthena's CRDs sees no failing watches.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node'
import { CRD_NAMES, CRD_VERSION } from '../api/crd.js'
import { KTHENA_API_GROUP } from '../api/schema.js'

export type KthenaMode = 'auto' | 'on' | 'off'
export const KTHENA_MODES: readonly KthenaMode[] = ['auto', 'on', 'off']

/** API discovery: the group/version lists `modelroutes` (404 = not installed). */
export async function kthenaGroupServed(kc: KubeConfig): Promise<boolean> {
  try {
    const list = await kc
      .makeApiClient(CustomObjectsApi)
      .getAPIResources({ group: KTHENA_API_GROUP, version: CRD_VERSION })
    return list.resources.some((r) => r.name === CRD_NAMES.modelRoute.plural)
  } catch (e) {
    const code = (e as { code?: unknown }).code
    if (code === 404) return false
    throw e
  }
}

export async function resolveKthena(mode: KthenaMode, kc: KubeConfig): Promise<boolean> {
  if (mode !== 'auto') return mode === 'on'
  return kthenaGroupServed(kc)
}
