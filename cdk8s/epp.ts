// Endpoint Pickers in the install manifests: for each InferencePool named in the install options,
// an `infer-gateway epp` Deployment and its Service in the pool's namespace (GAIE gateways resolve
// `endpointPickerRef` to a Service there), the operator NetworkPolicy opening its push port to
// them, and, when the pool's spec is given, the InferencePool itself with its endpointPickerRef on
// that Service. The EPP follows the operator's push channel like a data plane (no API-server
// access, no token mounted); the push token Secret must be copied into the pool's namespace
// (docs/epp.md): until then the EPP runs NOT_SERVING, as a data plane without the token does.
import { ApiObject } from 'cdk8s'
import type { Construct } from 'constructs'
import { OPERATOR_NAME, PORTS } from '../api/crd.js'
import { ENGINE_ANNOTATION, INFERENCE_POOL_API_VERSION } from '../api/gaie.js'
import type { InferenceEngine } from '../api/snapshot.js'
import { IMAGE_PATHS, IMAGE_UID } from '../hack/image/record.js'
import { COMMON_LABELS } from './crds.js'

/** One InferencePool served by an EPP of ours (install option `endpointPickers`). */
export interface EndpointPickerPool {
  /** The InferencePool's namespace; the EPP runs there. */
  readonly namespace: string
  /** The InferencePool's name; the EPP's Deployment and Service are `<name>-epp`. */
  readonly pool: string
  /** EPP replicas (default 2: a gateway with FailClose refuses requests while none is ready). */
  readonly replicas?: number
  /**
   * Also write the InferencePool (GAIE v1) with `endpointPickerRef` on the EPP Service. Absent:
   * the pool is applied by its owner and must name `<pool>-epp`, port 9002, itself.
   */
  readonly spec?: EndpointPickerPoolSpec
}

export interface EndpointPickerPoolSpec {
  readonly selector: Readonly<Record<string, string>>
  readonly targetPorts: readonly number[]
  /** The `infer-gateway.io/engine` annotation; absent = read from the pods' /metrics. */
  readonly engine?: InferenceEngine
  /** endpointPickerRef.failureMode (default FailClose, GAIE's default). */
  readonly failureMode?: 'FailOpen' | 'FailClose'
}

export const EPP_PORTS = { grpc: 9002, metrics: 9090 } as const
/**
 * The EPP container's NODE_OPTIONS: a young generation of 32 MB semi-spaces (16 by default) halves
 * the scavenges per stream, which set the EPP's p99 (docs/epp.md, "Cost per decision"). In
 * NODE_OPTIONS so the args stay the image's bundle and its flags; bench:epp runs the EPP with it.
 */
export const EPP_NODE_OPTIONS = '--max-semi-space-size=32'
/** Pod label naming the pool an EPP pod serves (its Service selects on it). */
export const EPP_POOL_LABEL = 'infer-gateway.io/epp'
const EPP_COMPONENT = 'epp'

export function eppName(pool: string): string {
  return `${pool}-epp`
}

interface EppContext {
  readonly image: string
  /** The operator's namespace (push channel Service, NetworkPolicy). */
  readonly systemNamespace: string
  readonly pushUrl: string
  readonly pushTokenDir: string
  readonly pushTokenSecret: string
  readonly networkPolicy: boolean
}

function selector(pool: string): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'infer-gateway',
    'app.kubernetes.io/component': EPP_COMPONENT,
    [EPP_POOL_LABEL]: pool,
  }
}

/** The EPP objects of every pool, in apply order. */
export function endpointPickers(
  scope: Construct,
  pools: readonly EndpointPickerPool[],
  ctx: EppContext,
): void {
  const seen = new Set<string>()
  for (const p of pools) {
    const key = `${p.namespace}/${p.pool}`
    if (seen.has(key)) throw new Error(`endpointPickers: ${key} is listed twice`)
    seen.add(key)
    endpointPicker(scope, p, ctx)
  }
  if (!ctx.networkPolicy) return
  // The operator's policy admits only its data planes to the push port; policies add up, so one
  // more per namespace lets that namespace's EPP pods in.
  for (const ns of [...new Set(pools.map((p) => p.namespace))].sort()) {
    new ApiObject(scope, `epp-networkpolicy-${ns}`, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: {
        name: `${OPERATOR_NAME}-epp-${ns}`,
        namespace: ctx.systemNamespace,
        labels: { ...COMMON_LABELS, 'app.kubernetes.io/component': 'operator' },
      },
      spec: {
        podSelector: {
          matchLabels: {
            'app.kubernetes.io/name': 'infer-gateway',
            'app.kubernetes.io/component': 'operator',
          },
        },
        policyTypes: ['Ingress'],
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
                podSelector: {
                  matchLabels: {
                    'app.kubernetes.io/name': 'infer-gateway',
                    'app.kubernetes.io/component': EPP_COMPONENT,
                  },
                },
              },
            ],
            ports: [{ protocol: 'TCP', port: PORTS.operatorPush }],
          },
        ],
      },
    })
  }
}

function endpointPicker(scope: Construct, p: EndpointPickerPool, ctx: EppContext): void {
  const name = eppName(p.pool)
  const sel = selector(p.pool)
  const metadata = { name, namespace: p.namespace, labels: { ...COMMON_LABELS, ...sel } }
  const id = `epp-${p.namespace}-${p.pool}`
  if (p.spec !== undefined) {
    const s = p.spec
    new ApiObject(scope, `${id}-pool`, {
      apiVersion: INFERENCE_POOL_API_VERSION,
      kind: 'InferencePool',
      metadata: {
        name: p.pool,
        namespace: p.namespace,
        labels: { ...COMMON_LABELS },
        ...(s.engine !== undefined ? { annotations: { [ENGINE_ANNOTATION]: s.engine } } : {}),
      },
      spec: {
        selector: { matchLabels: { ...s.selector } },
        targetPorts: s.targetPorts.map((number) => ({ number })),
        // group and kind as the API server defaults them, so a re-apply changes nothing.
        endpointPickerRef: {
          group: '',
          kind: 'Service',
          name,
          port: { number: EPP_PORTS.grpc },
          failureMode: s.failureMode ?? 'FailClose',
        },
      },
    })
  }
  new ApiObject(scope, `${id}-deployment`, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      replicas: p.replicas ?? 2,
      selector: { matchLabels: sel },
      template: {
        metadata: { labels: { ...COMMON_LABELS, ...sel } },
        spec: {
          automountServiceAccountToken: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: IMAGE_UID,
            runAsGroup: IMAGE_UID,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'epp',
              image: ctx.image,
              args: [
                IMAGE_PATHS.cli,
                'epp',
                `--pool=${p.namespace}/${p.pool}`,
                `--push-url=${ctx.pushUrl}`,
                `--push-token-file=${ctx.pushTokenDir}/token`,
              ],
              env: [{ name: 'NODE_OPTIONS', value: EPP_NODE_OPTIONS }],
              ports: [
                { name: 'grpc', containerPort: EPP_PORTS.grpc, protocol: 'TCP' },
                { name: 'metrics', containerPort: EPP_PORTS.metrics, protocol: 'TCP' },
              ],
              // The EPP's own gRPC health services (dataplane/epp/server.ts).
              readinessProbe: {
                grpc: { port: EPP_PORTS.grpc, service: 'readiness' },
                periodSeconds: 2,
                failureThreshold: 3,
              },
              livenessProbe: {
                grpc: { port: EPP_PORTS.grpc, service: 'liveness' },
                periodSeconds: 10,
                failureThreshold: 3,
              },
              resources: {
                requests: { cpu: '500m', memory: '256Mi' },
                limits: { memory: '512Mi' },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                privileged: false,
                capabilities: { drop: ['ALL'] },
                runAsNonRoot: true,
                runAsUser: IMAGE_UID,
                runAsGroup: IMAGE_UID,
                seccompProfile: { type: 'RuntimeDefault' },
              },
              volumeMounts: [{ name: 'push-token', mountPath: ctx.pushTokenDir, readOnly: true }],
            },
          ],
          volumes: [
            {
              name: 'push-token',
              // Optional: the pod starts before the Secret is copied here, NOT_SERVING until then.
              secret: { secretName: ctx.pushTokenSecret, optional: true },
            },
          ],
        },
      },
    },
  })
  new ApiObject(scope, `${id}-service`, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata,
    spec: {
      selector: sel,
      ports: [
        {
          name: 'grpc',
          port: EPP_PORTS.grpc,
          targetPort: 'grpc',
          protocol: 'TCP',
          // Plaintext gRPC (the EPP serves no TLS): gateways must speak h2c to it.
          appProtocol: 'kubernetes.io/h2c',
        },
        { name: 'metrics', port: EPP_PORTS.metrics, targetPort: 'metrics', protocol: 'TCP' },
      ],
    },
  })
}
