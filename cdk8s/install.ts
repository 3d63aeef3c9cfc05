// The install manifests (`dist/install.yaml`): namespace, CRDs, least-privilege RBAC, the operator
// and the data plane. One chart, plain objects out; main.ts only writes them to a file.
//
// RBAC in one sentence: the operator reads our CRs and Pods everywhere (routes and servers live in
// any namespace), writes only their status and Events there, and writes only its own ConfigMap,
// Secret and Lease in its own namespace; the data plane gets no API-server access at all (no
// token, no bindings) because the snapshot reaches it as a mounted file and over the push channel.
import { readFileSync } from 'node:fs'
import { ApiObject, App, Chart, Duration, JsonPatch, Size } from 'cdk8s'
import * as kplus from 'cdk8s-plus-28'
import type { Construct } from 'constructs'
import {
  CRD_NAMES,
  CREDENTIALS_SECRET,
  DATAPLANE_NAME,
  MOUNT_PATHS,
  OPERATOR_LEASE,
  OPERATOR_NAME,
  PORTS,
  SNAPSHOT_CONFIGMAP,
  SNAPSHOT_KEY,
  SYSTEM_NAMESPACE,
} from '../api/crd.js'
import { API_GROUP, KTHENA_API_GROUP } from '../api/schema.js'
import { IMAGE_PATHS, IMAGE_UID } from '../hack/image/record.js'
import { COMMON_LABELS, crdManifests } from './crds.js'
import { dashboardConfigMap } from './dashboard.js'
import { DATAPLANE_NODE_ARGS } from './dataplane-node.js'
import { type EndpointPickerPool, endpointPickers } from './epp.js'

export interface InstallOptions {
  /**
   * Default `ghcr.io/infer-gateway/infer-gateway:<package.json version>`; `npm run manifests`
   * pins `repository@digest` from the image build record instead.
   */
  readonly image?: string
  /** Default `infer-gateway-system`. */
  readonly namespace?: string
  /** A HorizontalPodAutoscaler for the data plane (default none: 2 replicas). */
  readonly autoscaling?: DataplaneAutoscaling
  /** A prometheus-operator ServiceMonitor for both components' /metrics (needs its CRD). */
  readonly serviceMonitor?: boolean
  /** The Grafana dashboard as a ConfigMap for Grafana's dashboard sidecar (cdk8s/dashboard.ts). */
  readonly grafanaDashboard?: boolean
  /**
   * Credential source Secrets live in this one namespace: the operator gets Secrets access by a
   * Role there (and watches only there) instead of cluster-wide. Default: any namespace.
   */
  readonly secretsNamespace?: string
  /** NetworkPolicy: only data-plane pods reach the operator's push port (default true). */
  readonly networkPolicy?: boolean
  /** An Endpoint Picker (`infer-gateway epp`) Deployment and Service per InferencePool (cdk8s/epp.ts). */
  readonly endpointPickers?: readonly EndpointPickerPool[]
}

export interface DataplaneAutoscaling {
  readonly minReplicas: number
  readonly maxReplicas: number
  /** Average CPU utilization (% of the 500m request) to scale at. */
  readonly targetCPUUtilizationPercentage: number
}

/** Secret (system namespace) holding the push channel's bearer token; the operator creates it. */
export const PUSH_TOKEN_SECRET = 'infer-gateway-push-token'
/** Where data-plane pods mount it (key `token`, operator/push-token.ts). */
export const PUSH_TOKEN_DIR = '/etc/infer-gateway/push-token'

const UID = IMAGE_UID
/** Data plane: keep serving this long after /readyz fails, then wait for in-flight requests. */
export const DRAIN_DELAY_MS = 5_000
export const SHUTDOWN_TIMEOUT_MS = 30_000
/** Beyond drain + shutdown, so the kubelet's SIGKILL never cuts a request the drain would finish. */
export const DATAPLANE_GRACE_SECONDS = 45

export function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  const version =
    typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined
  if (typeof version !== 'string') throw new Error('package.json has no version')
  return version
}

export function defaultImage(): string {
  return `ghcr.io/infer-gateway/infer-gateway:${packageVersion()}`
}

/** The snapshot push channel as the data plane reaches it through the operator Service. */
export function pushUrl(namespace: string): string {
  return `http://${OPERATOR_NAME}.${namespace}.svc:${PORTS.operatorPush}/v1/snapshot`
}

/** Labels selecting one component's pods (immutable once applied: never add a version here). */
function selectorLabels(component: 'operator' | 'dataplane'): Record<string, string> {
  return { 'app.kubernetes.io/name': 'infer-gateway', 'app.kubernetes.io/component': component }
}

function labels(component: 'operator' | 'dataplane'): Record<string, string> {
  return { ...COMMON_LABELS, ...selectorLabels(component) }
}

/**
 * Non-root 65532 (the image's `nonroot` user, hack/image), nothing writable, no
 * capabilities: passes the `restricted` Pod Security Standard.
 */
const containerSecurity: kplus.ContainerSecurityContextProps = {
  user: UID,
  group: UID,
  ensureNonRoot: true,
  readOnlyRootFilesystem: true,
  privileged: false,
  allowPrivilegeEscalation: false,
  capabilities: { drop: [kplus.Capability.ALL] },
  seccompProfile: { type: kplus.SeccompProfileType.RUNTIME_DEFAULT },
}
const podSecurity: kplus.PodSecurityContextProps = { user: UID, group: UID, ensureNonRoot: true }

/**
 * The bundles in the image (`npm run image`: the `npm run build` bundles in /app). The image's ENTRYPOINT
 * is node; `args` replaces only its CMD, so args[0] picks the bundle. The operator runs the full
 * CLI; the data plane runs its own bundle, which has no Kubernetes client inside (hack/build.ts
 * fails the build if it had): ~6 MB less code to parse, ~10 MB less RSS when idle.
 */
export const IMAGE_BUNDLES = {
  cli: IMAGE_PATHS.cli,
  dataplane: IMAGE_PATHS.dataplane,
} as const

function httpProbe(path: string, port: number, periodSeconds = 10, failureThreshold = 3) {
  return kplus.Probe.fromHttpGet(path, {
    port,
    periodSeconds: Duration.seconds(periodSeconds),
    timeoutSeconds: Duration.seconds(2),
    failureThreshold,
  })
}

/** Checked often while starting (fast first readiness), for up to 2 minutes. */
function startupProbe(port: number): kplus.Probe {
  return httpProbe('/healthz', port, 2, 60)
}

/**
 * Spread replicas over nodes and zones: a node or zone outage takes at most its share. Soft
 * (ScheduleAnyway): a one-node or one-zone cluster still schedules every replica.
 */
function topologySpread(component: 'operator' | 'dataplane') {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selectorLabels(component) },
  }))
}

/** A deployment whose pods carry (and are selected by) exactly `selectorLabels(component)`. */
function deployment(
  scope: Construct,
  component: 'operator' | 'dataplane',
  props: kplus.DeploymentProps,
): kplus.Deployment {
  const d = new kplus.Deployment(scope, component, {
    ...props,
    // cdk8s-plus would select on a hashed `cdk8s.io/metadata.addr` label; use readable ones.
    select: false,
    podMetadata: { labels: labels(component) },
    securityContext: podSecurity,
  })
  d.select(kplus.LabelSelector.of({ labels: selectorLabels(component) }))
  // cdk8s-plus labels every pod template with its construct address even when not selecting on
  // it; drop it so the pods carry only labels someone chose.
  ApiObject.of(d).addJsonPatch(
    JsonPatch.remove(
      `/spec/template/metadata/labels/${kplus.Pod.ADDRESS_LABEL.replace('/', '~1')}`,
    ),
    JsonPatch.add('/spec/template/spec/topologySpreadConstraints', topologySpread(component)),
    // cdk8s-plus writes these defaults; the API server stores zero values as absent, so a
    // client-side re-apply would patch them back every time ("configured").
    JsonPatch.remove('/spec/minReadySeconds'),
    JsonPatch.remove('/spec/template/spec/hostNetwork'),
    ...canonicalQuantities(ApiObject.of(d).toJson()),
  )
  return d
}

/**
 * cdk8s-plus writes 1 GiB as `1024Mi`; the API server stores quantities canonically (`1Gi`). A
 * manifest value that differs from the stored one makes every client-side re-apply `configured`
 * and a server-side apply over a client-side one conflict, so write what the server stores.
 */
function canonicalQuantities(obj: unknown): JsonPatch[] {
  const containers =
    (obj as { spec?: { template?: { spec?: { containers?: unknown[] } } } }).spec?.template?.spec
      ?.containers ?? []
  const patches: JsonPatch[] = []
  containers.forEach((c, i) => {
    const res = (c as { resources?: Record<string, Record<string, string>> }).resources ?? {}
    for (const [kind, values] of Object.entries(res)) {
      for (const [name, q] of Object.entries(values)) {
        const mi = /^(\d+)Mi$/.exec(q)?.[1]
        if (mi !== undefined && Number(mi) % 1024 === 0)
          patches.push(
            JsonPatch.replace(
              `/spec/template/spec/containers/${i}/resources/${kind}/${name}`,
              // A Quantity, not a string: patches apply before cdk8s-plus converts quantities.
              kplus.k8s.Quantity.fromString(`${Number(mi) / 1024}Gi`),
            ),
          )
      }
    }
  })
  return patches
}

/** `rules` shorthand: same group, same verbs, several resources. */
function rule(
  apiGroups: string[],
  resources: string[],
  verbs: string[],
  resourceNames?: string[],
): { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] } {
  return resourceNames === undefined
    ? { apiGroups, resources, verbs }
    : { apiGroups, resources, verbs, resourceNames }
}

export class InstallChart extends Chart {
  constructor(scope: Construct, id: string, opts: InstallOptions = {}) {
    super(scope, id, { labels: { ...COMMON_LABELS } })
    const ns = opts.namespace ?? SYSTEM_NAMESPACE
    const image = opts.image ?? defaultImage()

    new kplus.k8s.KubeNamespace(this, 'namespace', {
      metadata: {
        name: ns,
        // Both Deployments meet the `restricted` Pod Security Standard; enforce it so nothing
        // weaker can be added here by accident.
        labels: {
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/warn': 'restricted',
        },
      },
    })

    // Raw ApiObjects: the typed CRD construct drops `x-kubernetes-*` keys it has no field for.
    for (const crd of crdManifests()) new ApiObject(this, `crd-${crd.metadata.name}`, crd)

    // ---- RBAC ------------------------------------------------------------------------------
    // Plain ServiceAccount objects, referenced by name: passing the cdk8s-plus construct where
    // an IServiceAccount is expected breaks under the root tsconfig's exactOptionalPropertyTypes,
    // and tests under that config import this module.
    for (const [component, name] of [
      ['operator', OPERATOR_NAME],
      ['dataplane', DATAPLANE_NAME],
    ] as const) {
      new kplus.k8s.KubeServiceAccount(this, `${component}-sa`, {
        metadata: { name, namespace: ns, labels: labels(component) },
        // Tokens only where a pod spec asks for one (the operator's); the data plane never does.
        automountServiceAccountToken: false,
      })
    }
    const operatorSa = kplus.ServiceAccount.fromServiceAccountName(
      this,
      'operator-sa-ref',
      OPERATOR_NAME,
      {
        namespaceName: ns,
      },
    )
    const dataplaneSa = kplus.ServiceAccount.fromServiceAccountName(
      this,
      'dataplane-sa-ref',
      DATAPLANE_NAME,
      {
        namespaceName: ns,
      },
    )

    const plurals = [
      CRD_NAMES.modelRoute,
      CRD_NAMES.modelServer,
      CRD_NAMES.gatewayPolicy,
      CRD_NAMES.externalModelProvider,
    ].map((n) => n.plural)
    new kplus.k8s.KubeClusterRole(this, 'operator-clusterrole', {
      metadata: { name: OPERATOR_NAME, labels: labels('operator') },
      rules: [
        // Informers: list + watch; get for a fresh read before a status write.
        // Kthena's group too: the operator reconciles its objects when its CRDs are installed.
        rule([API_GROUP, KTHENA_API_GROUP], plurals, ['get', 'list', 'watch']),
        rule(
          [API_GROUP, KTHENA_API_GROUP],
          plurals.map((p) => `${p}/status`),
          ['patch', 'update'],
        ),
        // Gateway API Inference Extension and Gateway API (docs/gaie.md): pools, objectives (both
        // groups) and HTTPRoutes are read; only our own status.parents[] entries are written.
        rule(['inference.networking.k8s.io'], ['inferencepools'], ['get', 'list', 'watch']),
        rule(['inference.networking.k8s.io'], ['inferencepools/status'], ['patch', 'update']),
        rule(
          ['llm-d.ai', 'inference.networking.x-k8s.io'],
          ['inferenceobjectives'],
          ['get', 'list', 'watch'],
        ),
        rule(['gateway.networking.k8s.io'], ['httproutes'], ['get', 'list', 'watch']),
        rule(['gateway.networking.k8s.io'], ['httproutes/status'], ['patch', 'update']),
        // Endpoints are Ready pods matched by each ModelServer's workloadSelector.
        rule([''], ['pods'], ['get', 'list', 'watch']),
        // Credentials sources (GatewayPolicy credentialsSecretName, provider auth.secretRef) in any
        // namespace. RBAC cannot scope list/watch to a label, so this permits reading every
        // Secret; the operator itself only ever lists and watches Secrets labelled
        // networking.matrixinfer.ai/credential=true (docs/operator.md, "Credentials").
        // With `secretsNamespace` this becomes a Role in that namespace (below).
        ...(opts.secretsNamespace === undefined
          ? [rule([''], ['secrets'], ['list', 'watch'])]
          : []),
        // Events on transitions, next to the CR they describe (any namespace).
        rule([''], ['events'], ['create', 'patch']),
        rule(['events.k8s.io'], ['events'], ['create', 'patch']),
      ],
    })
    new kplus.k8s.KubeClusterRoleBinding(this, 'operator-clusterrolebinding', {
      metadata: { name: OPERATOR_NAME, labels: labels('operator') },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: OPERATOR_NAME },
      subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace: ns }],
    })
    // Own namespace only, and only the named objects: RBAC cannot restrict `create` by name (the
    // name is not known when it authorizes), so create is separate and unnamed.
    new kplus.k8s.KubeRole(this, 'operator-role', {
      metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
      rules: [
        rule(
          [''],
          ['configmaps'],
          ['get', 'list', 'watch', 'update', 'patch'],
          [SNAPSHOT_CONFIGMAP],
        ),
        rule([''], ['secrets'], ['get', 'update', 'patch'], [CREDENTIALS_SECRET]),
        // The push token: read by every replica, created by the first (operator/push-token.ts).
        rule([''], ['secrets'], ['get'], [PUSH_TOKEN_SECRET]),
        rule([''], ['configmaps', 'secrets'], ['create']),
        rule(['coordination.k8s.io'], ['leases'], ['get', 'update', 'patch'], [OPERATOR_LEASE]),
        rule(['coordination.k8s.io'], ['leases'], ['create']),
      ],
    })
    new kplus.k8s.KubeRoleBinding(this, 'operator-rolebinding', {
      metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: OPERATOR_NAME },
      subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace: ns }],
    })
    if (opts.secretsNamespace !== undefined) {
      // Credential source Secrets in one namespace: list/watch there only (--secrets-namespace).
      const secretsRole = `${OPERATOR_NAME}-secrets`
      new kplus.k8s.KubeRole(this, 'operator-secrets-role', {
        metadata: {
          name: secretsRole,
          namespace: opts.secretsNamespace,
          labels: labels('operator'),
        },
        rules: [rule([''], ['secrets'], ['list', 'watch'])],
      })
      new kplus.k8s.KubeRoleBinding(this, 'operator-secrets-rolebinding', {
        metadata: {
          name: secretsRole,
          namespace: opts.secretsNamespace,
          labels: labels('operator'),
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: secretsRole },
        subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace: ns }],
      })
    }

    // ---- operator --------------------------------------------------------------------------
    deployment(this, 'operator', {
      metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
      // Two replicas, one leader (Lease): a replica is always warm, and every replica serves
      // the push channel because all compile byte-identical snapshots.
      replicas: 2,
      strategy: kplus.DeploymentStrategy.rollingUpdate({
        maxSurge: kplus.PercentOrAbsolute.absolute(1),
        maxUnavailable: kplus.PercentOrAbsolute.absolute(0),
      }),
      serviceAccount: operatorSa,
      // cdk8s-plus defaults to no token; the operator is the one pod that needs one.
      automountServiceAccountToken: true,
      terminationGracePeriod: Duration.seconds(30),
      containers: [
        {
          name: 'operator',
          image,
          imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
          args: [
            IMAGE_BUNDLES.cli,
            'operator',
            '--namespace',
            ns,
            '--leader-elect',
            '--http-port',
            String(PORTS.operatorHttp),
            '--push-port',
            String(PORTS.operatorPush),
            '--push-token-secret',
            PUSH_TOKEN_SECRET,
            ...(opts.secretsNamespace !== undefined
              ? ['--secrets-namespace', opts.secretsNamespace]
              : []),
          ],
          envVariables: {
            // Lease holder identity and the namespace of the Lease/ConfigMap/Secret.
            // apiVersion spelled out: the API server defaults it, and a field that differs from
            // what was applied makes every re-apply a change (and a server-side apply conflict).
            POD_NAME: kplus.EnvValue.fromFieldRef(kplus.EnvFieldPaths.POD_NAME, {
              apiVersion: 'v1',
            }),
            POD_NAMESPACE: kplus.EnvValue.fromFieldRef(kplus.EnvFieldPaths.POD_NAMESPACE, {
              apiVersion: 'v1',
            }),
          },
          ports: [
            { name: 'http', number: PORTS.operatorHttp },
            { name: 'push', number: PORTS.operatorPush },
          ],
          // Replace cdk8s-plus's TCP startup probe with the real health check.
          startup: startupProbe(PORTS.operatorHttp),
          liveness: httpProbe('/healthz', PORTS.operatorHttp),
          readiness: httpProbe('/readyz', PORTS.operatorHttp),
          resources: {
            cpu: { request: kplus.Cpu.millis(100), limit: kplus.Cpu.units(1) },
            // Informer caches grow with pods: 10k pods is ~100 MiB of objects.
            memory: { request: Size.mebibytes(256), limit: Size.gibibytes(1) },
          },
          securityContext: containerSecurity,
        },
      ],
    })
    new kplus.k8s.KubeService(this, 'operator-service', {
      metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
      spec: {
        type: 'ClusterIP',
        selector: selectorLabels('operator'),
        ports: [
          {
            name: 'push',
            port: PORTS.operatorPush,
            targetPort: kplus.k8s.IntOrString.fromString('push'),
          },
          // /metrics (and the probes' paths) for a ServiceMonitor.
          {
            name: 'http',
            port: PORTS.operatorHttp,
            targetPort: kplus.k8s.IntOrString.fromString('http'),
          },
        ],
      },
    })

    // ---- data plane ------------------------------------------------------------------------
    const snapshotVolume = kplus.Volume.fromConfigMap(
      this,
      'snapshot-volume',
      kplus.ConfigMap.fromConfigMapName(this, 'snapshot-configmap', SNAPSHOT_CONFIGMAP),
      // Optional: the pod starts (on the push channel) before the operator's first publish.
      { name: 'snapshot', optional: true },
    )
    const credentialsVolume = kplus.Volume.fromSecret(
      this,
      'credentials-volume',
      kplus.Secret.fromSecretName(this, 'credentials-secret', CREDENTIALS_SECRET),
      // Optional: only GatewayPolicies with secrets make the operator write it.
      { name: 'credentials', optional: true },
    )
    const pushTokenVolume = kplus.Volume.fromSecret(
      this,
      'push-token-volume',
      kplus.Secret.fromSecretName(this, 'push-token-secret', PUSH_TOKEN_SECRET),
      // Optional: the operator creates it on its first start, possibly after this pod starts.
      { name: 'push-token', optional: true },
    )
    const dataplane = deployment(this, 'dataplane', {
      metadata: { name: DATAPLANE_NAME, namespace: ns, labels: labels('dataplane') },
      replicas: 2,
      strategy: kplus.DeploymentStrategy.rollingUpdate({
        maxSurge: kplus.PercentOrAbsolute.absolute(1),
        maxUnavailable: kplus.PercentOrAbsolute.absolute(0),
      }),
      serviceAccount: dataplaneSa,
      automountServiceAccountToken: false,
      terminationGracePeriod: Duration.seconds(DATAPLANE_GRACE_SECONDS),
      volumes: [snapshotVolume, credentialsVolume, pushTokenVolume],
      containers: [
        {
          name: 'dataplane',
          image,
          imagePullPolicy: kplus.ImagePullPolicy.IF_NOT_PRESENT,
          args: [
            // Node's flags first (the entrypoint is node): the young generation the benchmarks
            // measured (cdk8s/dataplane-node.ts).
            ...DATAPLANE_NODE_ARGS,
            IMAGE_BUNDLES.dataplane,
            '--snapshot',
            `${MOUNT_PATHS.snapshotDir}/${SNAPSHOT_KEY}`,
            '--push-url',
            pushUrl(ns),
            '--push-token-file',
            `${PUSH_TOKEN_DIR}/token`,
            // API-key hashes, JWT/OAuth2 client secrets and provider keys (the mounted Secret).
            '--secrets-dir',
            MOUNT_PATHS.credentialsDir,
            '--port',
            String(PORTS.dataplane),
            '--drain-delay',
            String(DRAIN_DELAY_MS),
            '--shutdown-timeout',
            String(SHUTDOWN_TIMEOUT_MS),
          ],
          ports: [{ name: 'http', number: PORTS.dataplane }],
          volumeMounts: [
            { path: MOUNT_PATHS.snapshotDir, volume: snapshotVolume, readOnly: true },
            { path: MOUNT_PATHS.credentialsDir, volume: credentialsVolume, readOnly: true },
            { path: PUSH_TOKEN_DIR, volume: pushTokenVolume, readOnly: true },
          ],
          startup: startupProbe(PORTS.dataplane),
          liveness: httpProbe('/healthz', PORTS.dataplane),
          readiness: httpProbe('/readyz', PORTS.dataplane),
          resources: {
            // No CPU limit: throttling a latency-critical proxy costs more than it protects.
            cpu: { request: kplus.Cpu.millis(500) },
            memory: { request: Size.mebibytes(256), limit: Size.gibibytes(1) },
          },
          securityContext: containerSecurity,
        },
      ],
    })
    new kplus.k8s.KubeService(this, 'dataplane-service', {
      metadata: { name: DATAPLANE_NAME, namespace: ns, labels: labels('dataplane') },
      spec: {
        type: 'ClusterIP',
        selector: selectorLabels('dataplane'),
        ports: [{ name: 'http', port: 80, targetPort: kplus.k8s.IntOrString.fromString('http') }],
      },
    })
    // A client-side re-apply (`kubectl apply -f`) prints "configured" for both PDBs though nothing
    // changes (`kubectl diff` empty, resourceVersion kept): spec.selector's patch strategy is
    // "replace", so kubectl's three-way strategic merge patch always re-sends it. No manifest form
    // avoids that short of dropping the selector; `--server-side` re-apply reports no change.
    new kplus.k8s.KubePodDisruptionBudget(this, 'dataplane-pdb', {
      metadata: { name: DATAPLANE_NAME, namespace: ns, labels: labels('dataplane') },
      spec: {
        minAvailable: kplus.k8s.IntOrString.fromNumber(1),
        selector: { matchLabels: selectorLabels('dataplane') },
      },
    })
    // The standby replica keeps the push channel served while the other is drained.
    new kplus.k8s.KubePodDisruptionBudget(this, 'operator-pdb', {
      metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
      spec: {
        minAvailable: kplus.k8s.IntOrString.fromNumber(1),
        selector: { matchLabels: selectorLabels('operator') },
      },
    })

    if (opts.autoscaling !== undefined) {
      const a = opts.autoscaling
      if (!(a.minReplicas >= 1 && a.minReplicas <= a.maxReplicas))
        throw new Error('autoscaling: need 1 <= minReplicas <= maxReplicas')
      // The HPA owns the replica count: a re-apply must not reset it to the Deployment's.
      ApiObject.of(dataplane).addJsonPatch(JsonPatch.remove('/spec/replicas'))
      new kplus.k8s.KubeHorizontalPodAutoscalerV2(this, 'dataplane-hpa', {
        metadata: { name: DATAPLANE_NAME, namespace: ns, labels: labels('dataplane') },
        spec: {
          scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: DATAPLANE_NAME },
          minReplicas: a.minReplicas,
          maxReplicas: a.maxReplicas,
          metrics: [
            {
              type: 'Resource',
              resource: {
                name: 'cpu',
                target: {
                  type: 'Utilization',
                  averageUtilization: a.targetCPUUtilizationPercentage,
                },
              },
            },
          ],
        },
      })
    }

    if (opts.networkPolicy ?? true) {
      // Ingress to operator pods: the push port from data-plane pods only; the http port
      // (probes, /metrics) from anywhere. The push token guards /v1/snapshot on both ports.
      new kplus.k8s.KubeNetworkPolicy(this, 'operator-networkpolicy', {
        metadata: { name: OPERATOR_NAME, namespace: ns, labels: labels('operator') },
        spec: {
          podSelector: { matchLabels: selectorLabels('operator') },
          policyTypes: ['Ingress'],
          ingress: [
            {
              from: [{ podSelector: { matchLabels: selectorLabels('dataplane') } }],
              ports: [
                { protocol: 'TCP', port: kplus.k8s.IntOrString.fromNumber(PORTS.operatorPush) },
              ],
            },
            {
              ports: [
                { protocol: 'TCP', port: kplus.k8s.IntOrString.fromNumber(PORTS.operatorHttp) },
              ],
            },
          ],
        },
      })
    }

    if (opts.serviceMonitor) {
      // Both Services name their /metrics port `http` (operator 8081, data plane 80 → 8080).
      new ApiObject(this, 'servicemonitor', {
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'ServiceMonitor',
        metadata: { name: 'infer-gateway', namespace: ns, labels: { ...COMMON_LABELS } },
        spec: {
          selector: { matchLabels: { 'app.kubernetes.io/name': 'infer-gateway' } },
          namespaceSelector: { matchNames: [ns] },
          endpoints: [{ port: 'http', path: '/metrics', interval: '30s' }],
        },
      })
    }
    if (opts.grafanaDashboard) dashboardConfigMap(this, ns)
    if (opts.endpointPickers !== undefined && opts.endpointPickers.length > 0)
      endpointPickers(this, opts.endpointPickers, {
        image,
        systemNamespace: ns,
        pushUrl: pushUrl(ns),
        pushTokenDir: PUSH_TOKEN_DIR,
        pushTokenSecret: PUSH_TOKEN_SECRET,
        networkPolicy: opts.networkPolicy ?? true,
      })
  }
}

/** Every object of `dist/install.yaml`, in apply order (namespace and CRDs first). */
export function installObjects(opts: InstallOptions = {}): Record<string, unknown>[] {
  const app = new App()
  const chart = new InstallChart(app, 'infer-gateway', opts)
  return chart.toJson() as Record<string, unknown>[]
}
