// Names the operator, the install manifests (cdk8s/) and the tests must agree on: the CRDs'
// kinds and plurals, and the objects the operator reads and writes in its own namespace. A
// rename here changes RBAC, the Deployments' flags and the operator's clients together.
import { API_GROUP } from './schema.js'

export const CRD_VERSION = 'v1alpha1'
/** `kubectl get infer` lists every kind of ours. */
export const CRD_CATEGORY = 'infer'

export interface CrdNames {
  readonly kind: string
  readonly listKind: string
  readonly plural: string
  readonly singular: string
  readonly shortNames: readonly string[]
}

export const CRD_NAMES = {
  modelRoute: {
    kind: 'ModelRoute',
    listKind: 'ModelRouteList',
    plural: 'modelroutes',
    singular: 'modelroute',
    shortNames: ['mr'],
  },
  modelServer: {
    kind: 'ModelServer',
    listKind: 'ModelServerList',
    plural: 'modelservers',
    singular: 'modelserver',
    shortNames: ['ms'],
  },
  gatewayPolicy: {
    kind: 'GatewayPolicy',
    listKind: 'GatewayPolicyList',
    plural: 'gatewaypolicies',
    singular: 'gatewaypolicy',
    // `gp` is not claimed by any built-in resource; `gwp` avoids a clash with Gateway API tools.
    shortNames: ['gwp'],
  },
  externalModelProvider: {
    kind: 'ExternalModelProvider',
    listKind: 'ExternalModelProviderList',
    plural: 'externalmodelproviders',
    singular: 'externalmodelprovider',
    shortNames: ['emp'],
  },
} as const satisfies Record<string, CrdNames>

export type CrdKey = keyof typeof CRD_NAMES

/** `<plural>.<group>`: the CRD object's own name. */
export function crdName(key: CrdKey): string {
  return `${CRD_NAMES[key].plural}.${API_GROUP}`
}

/** Where the operator and the data plane run (`kubectl apply -f dist/install.yaml`). */
export const SYSTEM_NAMESPACE = 'infer-gateway-system'

export const OPERATOR_NAME = 'infer-gateway-operator'
export const DATAPLANE_NAME = 'infer-gateway-dataplane'

/** The durable copy of the routing snapshot, written by the operator, mounted by the data plane. */
export const SNAPSHOT_CONFIGMAP = 'infer-gateway-snapshot'
/** Gzipped JSON in `binaryData` (ConfigMap keys are file names in the mounted volume). */
export const SNAPSHOT_KEY = 'snapshot.json.gz'
/** Secret values the data plane needs (GatewayPolicy `secretKey` entries), as mounted files. */
export const CREDENTIALS_SECRET = 'infer-gateway-credentials'
/**
 * Label a Secret must carry (value `true`) for the operator to read it as a credentials source
 * (GatewayPolicy `credentialsSecretName`, ExternalModelProvider `auth.secretRef`). The operator
 * watches only Secrets with it, so unrelated Secrets never enter its cache.
 */
export const CREDENTIAL_SOURCE_LABEL = `${API_GROUP}/credential`
/** coordination.k8s.io/v1 Lease the operator replicas elect a writer with. */
export const OPERATOR_LEASE = 'infer-gateway-operator'

export const PORTS = {
  /** Operator: /healthz, /readyz and /metrics. */
  operatorHttp: 8081,
  /** Operator: the snapshot push channel (`GET /v1/snapshot`, docs/snapshot-protocol.md). */
  operatorPush: 8082,
  /** Data plane: the OpenAI-compatible API plus /healthz, /readyz, /metrics. */
  dataplane: 8080,
} as const

/** Where the data plane finds the mounted ConfigMap and Secret. */
export const MOUNT_PATHS = {
  snapshotDir: '/etc/infer-gateway/snapshot',
  credentialsDir: '/etc/infer-gateway/credentials',
} as const
