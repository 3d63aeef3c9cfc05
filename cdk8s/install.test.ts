import { describe, expect, it } from 'vitest'
import {
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
import { semiSpaceFlag } from '../dataplane/worker-heap.js'
import { IMAGE_PATHS, IMAGE_UID } from '../hack/image/record.js'
import { DATAPLANE_NODE_ARGS } from './dataplane-node.js'
import {
  DRAIN_DELAY_MS,
  IMAGE_BUNDLES,
  installObjects,
  PUSH_TOKEN_DIR,
  PUSH_TOKEN_SECRET,
  packageVersion,
  pushUrl,
  SHUTDOWN_TIMEOUT_MS,
} from './install.js'

// Loose views of the synthesized objects: just the fields the invariants read.
interface Obj {
  apiVersion: string
  kind: string
  metadata: { name?: string; namespace?: string; labels?: Record<string, string> }
  [k: string]: unknown
}
interface Rule {
  apiGroups: string[]
  resources: string[]
  verbs: string[]
  resourceNames?: string[]
}
interface Binding extends Obj {
  roleRef: { kind: string; name: string }
  subjects: { kind: string; name: string; namespace?: string }[]
}
interface Probe {
  httpGet: { path: string; port: number }
}
interface Container {
  name: string
  image: string
  imagePullPolicy: string
  command?: string[]
  args: string[]
  ports: { name: string; containerPort: number }[]
  livenessProbe: Probe
  readinessProbe: Probe
  startupProbe: Probe
  resources: { requests: Record<string, string>; limits?: Record<string, string> }
  securityContext: Record<string, unknown>
  volumeMounts?: { name: string; mountPath: string; readOnly: boolean }[]
  env?: { name: string; value?: string }[]
}
interface Deployment extends Obj {
  spec: {
    replicas: number
    selector: { matchLabels: Record<string, string> }
    template: {
      metadata: { labels: Record<string, string> }
      spec: {
        serviceAccountName: string
        automountServiceAccountToken: boolean
        terminationGracePeriodSeconds: number
        securityContext: Record<string, unknown>
        containers: Container[]
        volumes?: {
          name: string
          configMap?: { name: string; optional: boolean }
          secret?: { secretName: string; optional: boolean }
        }[]
      }
    }
  }
}
interface Service extends Obj {
  spec: {
    selector: Record<string, string>
    ports: { name: string; port: number; targetPort: string | number }[]
  }
}

const objects = installObjects() as Obj[]

function find<T extends Obj>(kind: string, name: string, objs: Obj[] = objects): T {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`no ${kind} ${name}`)
  return o as T
}

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
])

describe('install manifests', () => {
  it('name every object and put every namespaced one in the system namespace', () => {
    expect(objects.length).toBeGreaterThan(10)
    for (const o of objects) {
      expect(o.metadata.name, `${o.kind} without a name`).toMatch(/^[a-z0-9.-]+$/)
      // Hashed names (`operator-c8ae2b7e`) mean a cdk8s default leaked through.
      expect(o.metadata.name).not.toMatch(/-[0-9a-f]{8}$/)
      if (CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace).toBeUndefined()
      else expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(SYSTEM_NAMESPACE)
    }
    expect(JSON.stringify(objects)).not.toContain('cdk8s.io/')
  })

  it('apply in a working order: namespace, then CRDs, then everything else', () => {
    const kinds = objects.map((o) => o.kind)
    expect(kinds[0]).toBe('Namespace')
    expect(kinds.slice(1, 4)).toEqual(Array(3).fill('CustomResourceDefinition'))
  })

  it('give the data plane no API-server access at all', () => {
    const sa = find('ServiceAccount', DATAPLANE_NAME)
    expect(sa['automountServiceAccountToken']).toBe(false)
    const bindings = objects.filter((o) => o.kind.endsWith('RoleBinding')) as Binding[]
    expect(bindings.length).toBeGreaterThan(0)
    for (const b of bindings) {
      for (const s of b.subjects) expect(s.name).not.toBe(DATAPLANE_NAME)
    }
    const pod = find<Deployment>('Deployment', DATAPLANE_NAME).spec.template.spec
    expect(pod.serviceAccountName).toBe(DATAPLANE_NAME)
    expect(pod.automountServiceAccountToken).toBe(false)
  })

  it('grant the operator exactly the least cluster-wide set', () => {
    const role = find('ClusterRole', OPERATOR_NAME)
    expect(role['rules']).toEqual([
      {
        apiGroups: ['networking.matrixinfer.ai', 'networking.serving.volcano.sh'],
        resources: ['modelroutes', 'modelservers', 'gatewaypolicies', 'externalmodelproviders'],
        verbs: ['get', 'list', 'watch'],
      },
      {
        apiGroups: ['networking.matrixinfer.ai', 'networking.serving.volcano.sh'],
        resources: [
          'modelroutes/status',
          'modelservers/status',
          'gatewaypolicies/status',
          'externalmodelproviders/status',
        ],
        verbs: ['patch', 'update'],
      },
      // Gateway API Inference Extension and Gateway API: read; only status written.
      {
        apiGroups: ['inference.networking.k8s.io'],
        resources: ['inferencepools'],
        verbs: ['get', 'list', 'watch'],
      },
      {
        apiGroups: ['inference.networking.k8s.io'],
        resources: ['inferencepools/status'],
        verbs: ['patch', 'update'],
      },
      {
        apiGroups: ['llm-d.ai', 'inference.networking.x-k8s.io'],
        resources: ['inferenceobjectives'],
        verbs: ['get', 'list', 'watch'],
      },
      {
        apiGroups: ['gateway.networking.k8s.io'],
        resources: ['httproutes'],
        verbs: ['get', 'list', 'watch'],
      },
      {
        apiGroups: ['gateway.networking.k8s.io'],
        resources: ['httproutes/status'],
        verbs: ['patch', 'update'],
      },
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      // Credentials sources: the operator lists/watches only labelled ones (RBAC cannot say so).
      { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] },
      { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
    ])
    const binding = find<Binding>('ClusterRoleBinding', OPERATOR_NAME)
    expect(binding.roleRef).toMatchObject({ kind: 'ClusterRole', name: OPERATOR_NAME })
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: OPERATOR_NAME, namespace: SYSTEM_NAMESPACE },
    ])
  })

  it('limit namespaced writes to the named ConfigMap, Secret and Lease', () => {
    const rules = find('Role', OPERATOR_NAME)['rules'] as Rule[]
    expect(rules).toEqual([
      {
        apiGroups: [''],
        resources: ['configmaps'],
        // list/watch by name: every operator replica follows the published snapshot.
        verbs: ['get', 'list', 'watch', 'update', 'patch'],
        resourceNames: [SNAPSHOT_CONFIGMAP],
      },
      {
        apiGroups: [''],
        resources: ['secrets'],
        verbs: ['get', 'update', 'patch'],
        resourceNames: [CREDENTIALS_SECRET],
      },
      // The push token: every replica reads it, the first one creates it (unnamed create below).
      {
        apiGroups: [''],
        resources: ['secrets'],
        verbs: ['get'],
        resourceNames: [PUSH_TOKEN_SECRET],
      },
      { apiGroups: [''], resources: ['configmaps', 'secrets'], verbs: ['create'] },
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        verbs: ['get', 'update', 'patch'],
        resourceNames: [OPERATOR_LEASE],
      },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
    ])
    // No wildcard anywhere. Bulk Secret reads exist in exactly one rule (the ClusterRole's
    // list/watch for labelled credentials sources); no rule may add get/list on others' names.
    const all = objects
      .filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')
      .flatMap((o) => o['rules'] as Rule[])
    expect(JSON.stringify(all)).not.toContain('*')
    const bulk = all.filter((x) => x.resources.includes('secrets') && x.verbs.includes('list'))
    expect(bulk).toEqual([{ apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] }])
    for (const r of all.filter((x) => x.resources.includes('secrets') && x.verbs.includes('get')))
      expect([[CREDENTIALS_SECRET], [PUSH_TOKEN_SECRET]]).toContainEqual(r.resourceNames)
  })

  it('run the operator as 2 leader-electing replicas with probes, ports and a token', () => {
    const d = find<Deployment>('Deployment', OPERATOR_NAME)
    expect(d.spec.replicas).toBe(2)
    const pod = d.spec.template.spec
    expect(pod.serviceAccountName).toBe(OPERATOR_NAME)
    expect(pod.automountServiceAccountToken).toBe(true)
    const [c] = pod.containers
    if (!c) throw new Error('no container')
    expect(c.args).toContain('--leader-elect')
    expect(c.args.slice(c.args.indexOf('--namespace'), c.args.indexOf('--namespace') + 2)).toEqual([
      '--namespace',
      SYSTEM_NAMESPACE,
    ])
    expect(c.ports).toEqual([
      { name: 'http', containerPort: PORTS.operatorHttp },
      { name: 'push', containerPort: PORTS.operatorPush },
    ])
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: PORTS.operatorHttp })
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: PORTS.operatorHttp })
    const svc = find<Service>('Service', OPERATOR_NAME)
    expect(svc.spec.ports).toEqual([
      { name: 'push', port: PORTS.operatorPush, targetPort: 'push' },
      { name: 'http', port: PORTS.operatorHttp, targetPort: 'http' },
    ])
    expect(c.args.slice(c.args.indexOf('--push-token-secret'))[1]).toBe(PUSH_TOKEN_SECRET)
    expect(svc.spec.selector).toEqual(d.spec.selector.matchLabels)
  })

  it('override the cdk8s-plus defaults on both workloads', () => {
    for (const name of [OPERATOR_NAME, DATAPLANE_NAME]) {
      const d = find<Deployment>('Deployment', name)
      const pod = d.spec.template.spec
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 })
      for (const c of pod.containers) {
        expect(c.image).toBe(`ghcr.io/infer-gateway/infer-gateway:${packageVersion()}`)
        expect(c.imagePullPolicy).toBe('IfNotPresent')
        // Keep the image's ENTRYPOINT (node); args replace CMD (args[0] picks the bundle).
        expect(c.command).toBeUndefined()
        expect(c.securityContext).toMatchObject({
          runAsNonRoot: true,
          runAsUser: 65532,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
        })
        // Not cdk8s-plus's 1000m/512Mi … 1500m/2048Mi.
        expect(c.resources.requests['cpu']).not.toBe('1000m')
        expect(c.resources.requests['memory']).toBeDefined()
        expect(c.resources.limits?.['memory']).toBeDefined()
        // A real HTTP startup probe instead of the default TCP one.
        expect(c.startupProbe.httpGet.path).toBe('/healthz')
      }
      // Pods carry the selector labels (and the selector is readable, not a hash).
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels)
      expect(d.spec.selector.matchLabels['app.kubernetes.io/component']).toBeDefined()
    }
  })

  it('run the full CLI for the operator and the small data-plane bundle for the data plane', () => {
    const args = (name: string) =>
      find<Deployment>('Deployment', name).spec.template.spec.containers[0]?.args ?? []
    expect(args(OPERATOR_NAME).slice(0, 2)).toEqual(['/app/infer-gateway.mjs', 'operator'])
    // dist/dataplane.mjs takes the data-plane flags directly (no subcommand) and has no
    // Kubernetes client inside (hack/build.ts refuses to build it otherwise); before it, only
    // Node's flags (the entrypoint is node).
    const dp = args(DATAPLANE_NAME)
    const at = dp.indexOf('/app/dataplane.mjs')
    expect(dp.slice(0, at)).toEqual(DATAPLANE_NODE_ARGS)
    expect(dp).not.toContain('dataplane')
    expect(dp[at + 1]).toBe('--snapshot')
  })

  it("give the data plane a young generation fixed at Node's 16 MB cap, in Node's flags", () => {
    const c = find<Deployment>('Deployment', DATAPLANE_NAME).spec.template.spec.containers[0]
    const flags = (c?.args ?? []).slice(0, (c?.args ?? []).indexOf('/app/dataplane.mjs'))
    // The cap as the scrape thread reads it (it keeps its own worker's cap under it), and a
    // minimum equal to it: V8 would otherwise start it at 1 MB and shrink it after a mark-compact.
    const max = semiSpaceFlag(flags, undefined)
    expect(max).toBe(16)
    expect(flags).toContain(`--min-semi-space-size=${max}`)
    // Not in NODE_OPTIONS, which refuses --min-semi-space-size (Node exits at start).
    expect(c?.env ?? []).toEqual([])
  })

  it("keep V8 from throwing the hot path's optimized code away when the data plane idles", () => {
    const c = find<Deployment>('Deployment', DATAPLANE_NAME).spec.template.spec.containers[0]
    const flags = (c?.args ?? []).slice(0, (c?.args ?? []).indexOf('/app/dataplane.mjs'))
    // The memory reducer's idle collections discarded ~140 optimized functions at once
    // (docs/proxy-cost.md "Warm-up: the first windows").
    expect(flags).toContain('--no-memory-reducer')
  })

  it('agree with the image (npm run image) on the bundle paths and the user', () => {
    // hack/image/image.test.ts runs these paths from the built image in a container.
    expect(IMAGE_BUNDLES).toEqual({ cli: IMAGE_PATHS.cli, dataplane: IMAGE_PATHS.dataplane })
    for (const name of [OPERATOR_NAME, DATAPLANE_NAME]) {
      const pod = find<Deployment>('Deployment', name).spec.template.spec
      expect(pod.securityContext).toMatchObject({ runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID })
    }
  })

  it('wire the data plane to the snapshot ConfigMap and the push channel', () => {
    const d = find<Deployment>('Deployment', DATAPLANE_NAME)
    const pod = d.spec.template.spec
    const [c] = pod.containers
    if (!c) throw new Error('no container')
    const arg = (flag: string) => c.args[c.args.indexOf(flag) + 1]
    expect(arg('--snapshot')).toBe(`${MOUNT_PATHS.snapshotDir}/${SNAPSHOT_KEY}`)
    expect(arg('--push-url')).toBe(
      `http://${OPERATOR_NAME}.${SYSTEM_NAMESPACE}.svc:${PORTS.operatorPush}/v1/snapshot`,
    )
    // That the data plane accepts these flags is checked by running it: test/manifests.test.ts.
    const snapshotMount = c.volumeMounts?.find((m) => m.mountPath === MOUNT_PATHS.snapshotDir)
    expect(snapshotMount?.readOnly).toBe(true)
    const volume = pod.volumes?.find((v) => v.name === snapshotMount?.name)
    // Optional, so a pod starts before the operator's first publish.
    expect(volume?.configMap).toEqual({ name: SNAPSHOT_CONFIGMAP, optional: true })
    const secrets = pod.volumes?.filter((v) => v.secret !== undefined).map((v) => v.secret)
    expect(secrets).toEqual([
      { secretName: CREDENTIALS_SECRET, optional: true },
      // Optional: the operator creates it on its first start, maybe after this pod starts.
      { secretName: PUSH_TOKEN_SECRET, optional: true },
    ])
    expect(arg('--push-token-file')).toBe(`${PUSH_TOKEN_DIR}/token`)
    expect(c.volumeMounts?.find((m) => m.mountPath === PUSH_TOKEN_DIR)?.readOnly).toBe(true)
    expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: PORTS.dataplane })
    expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: PORTS.dataplane })
    expect(Number(arg('--drain-delay'))).toBe(DRAIN_DELAY_MS)
    expect(Number(arg('--shutdown-timeout'))).toBe(SHUTDOWN_TIMEOUT_MS)
    // SIGKILL must not arrive before drain + in-flight wait are over.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      DRAIN_DELAY_MS + SHUTDOWN_TIMEOUT_MS,
    )
  })

  it('expose the data plane on port 80 and keep one pod through disruptions', () => {
    const d = find<Deployment>('Deployment', DATAPLANE_NAME)
    expect(d.spec.replicas).toBeGreaterThanOrEqual(2)
    const svc = find<Service>('Service', DATAPLANE_NAME)
    expect(svc.spec.ports).toEqual([{ name: 'http', port: 80, targetPort: 'http' }])
    expect(d.spec.template.spec.containers[0]?.ports).toContainEqual({
      name: 'http',
      containerPort: 8080,
    })
    expect(svc.spec.selector).toEqual(d.spec.selector.matchLabels)
    const pdb = find('PodDisruptionBudget', DATAPLANE_NAME)
    expect(pdb['spec']).toEqual({
      minAvailable: 1,
      selector: { matchLabels: d.spec.selector.matchLabels },
    })
  })

  it('follow the image and namespace options everywhere', () => {
    const objs = installObjects({ image: 'registry.local/ig:dev', namespace: 'gw' }) as Obj[]
    expect(find('Namespace', 'gw', objs)).toBeDefined()
    for (const o of objs) if (!CLUSTER_SCOPED.has(o.kind)) expect(o.metadata.namespace).toBe('gw')
    for (const b of objs.filter((o) => o.kind.endsWith('RoleBinding')) as Binding[])
      for (const s of b.subjects) expect(s.namespace).toBe('gw')
    const text = JSON.stringify(objs)
    expect(text).not.toContain(SYSTEM_NAMESPACE)
    expect(text).not.toContain('ghcr.io')
    expect(text).toContain(pushUrl('gw'))
    const dp = find<Deployment>('Deployment', DATAPLANE_NAME, objs)
    expect(dp.spec.template.spec.containers[0]?.image).toBe('registry.local/ig:dev')
  })
})

describe('production options', () => {
  const labelsOf = (name: string, objs: Obj[] = objects) =>
    find<Deployment>('Deployment', name, objs).spec.selector.matchLabels

  it('keep one operator replica through disruptions (the push channel stays served)', () => {
    const pdb = find('PodDisruptionBudget', OPERATOR_NAME)
    expect(pdb['spec']).toEqual({
      minAvailable: 1,
      selector: { matchLabels: labelsOf(OPERATOR_NAME) },
    })
  })

  it('spread both Deployments over nodes and zones, softly', () => {
    for (const name of [OPERATOR_NAME, DATAPLANE_NAME]) {
      const spec = find<Deployment>('Deployment', name).spec.template.spec as unknown as {
        topologySpreadConstraints: unknown[]
      }
      expect(spec.topologySpreadConstraints).toEqual(
        ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
          maxSkew: 1,
          topologyKey,
          whenUnsatisfiable: 'ScheduleAnyway',
          labelSelector: { matchLabels: labelsOf(name) },
        })),
      )
    }
  })

  it('let only data-plane pods reach the operator push port (NetworkPolicy, on by default)', () => {
    const np = find('NetworkPolicy', OPERATOR_NAME)
    expect(np['spec']).toEqual({
      podSelector: { matchLabels: labelsOf(OPERATOR_NAME) },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{ podSelector: { matchLabels: labelsOf(DATAPLANE_NAME) } }],
          ports: [{ protocol: 'TCP', port: PORTS.operatorPush }],
        },
        { ports: [{ protocol: 'TCP', port: PORTS.operatorHttp }] },
      ],
    })
    const off = installObjects({ networkPolicy: false }) as Obj[]
    expect(off.some((o) => o.kind === 'NetworkPolicy')).toBe(false)
  })

  it('add a data-plane HPA only when asked, and then leave replicas to it', () => {
    expect(objects.some((o) => o.kind === 'HorizontalPodAutoscaler')).toBe(false)
    const objs = installObjects({
      autoscaling: { minReplicas: 3, maxReplicas: 12, targetCPUUtilizationPercentage: 65 },
    }) as Obj[]
    const hpa = find('HorizontalPodAutoscaler', DATAPLANE_NAME, objs)
    expect(hpa.apiVersion).toBe('autoscaling/v2')
    expect(hpa['spec']).toEqual({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: DATAPLANE_NAME },
      minReplicas: 3,
      maxReplicas: 12,
      metrics: [
        {
          type: 'Resource',
          resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 65 } },
        },
      ],
    })
    // A re-apply must not reset what the HPA chose.
    expect(find<Deployment>('Deployment', DATAPLANE_NAME, objs).spec.replicas).toBeUndefined()
    expect(find<Deployment>('Deployment', OPERATOR_NAME, objs).spec.replicas).toBe(2)
    expect(() =>
      installObjects({
        autoscaling: { minReplicas: 5, maxReplicas: 2, targetCPUUtilizationPercentage: 70 },
      }),
    ).toThrow(/minReplicas <= maxReplicas/)
  })

  it('add a ServiceMonitor for both Services only when asked', () => {
    expect(objects.some((o) => o.kind === 'ServiceMonitor')).toBe(false)
    const objs = installObjects({ serviceMonitor: true }) as Obj[]
    const sm = find('ServiceMonitor', 'infer-gateway', objs)
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1')
    const sel = (sm['spec'] as { selector: { matchLabels: Record<string, string> } }).selector
    for (const svc of objs.filter((o) => o.kind === 'Service') as Service[]) {
      expect(svc.metadata.labels).toMatchObject(sel.matchLabels)
      expect(svc.spec.ports.map((p) => (p as { name: string }).name)).toContain('http')
    }
  })

  it('narrow Secrets to a Role in one namespace when secretsNamespace is set', () => {
    const objs = installObjects({ secretsNamespace: 'team-keys' }) as Obj[]
    const cluster = find('ClusterRole', OPERATOR_NAME, objs)['rules'] as Rule[]
    expect(cluster.some((r) => r.resources.includes('secrets'))).toBe(false)
    const role = find('Role', `${OPERATOR_NAME}-secrets`, objs)
    expect(role.metadata.namespace).toBe('team-keys')
    expect(role['rules']).toEqual([
      { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch'] },
    ])
    const rb = find<Binding>('RoleBinding', `${OPERATOR_NAME}-secrets`, objs)
    expect(rb.metadata.namespace).toBe('team-keys')
    expect(rb.subjects).toEqual([
      { kind: 'ServiceAccount', name: OPERATOR_NAME, namespace: SYSTEM_NAMESPACE },
    ])
    const args = find<Deployment>('Deployment', OPERATOR_NAME, objs).spec.template.spec
      .containers[0]?.args
    expect(args?.slice(args.indexOf('--secrets-namespace'))[1]).toBe('team-keys')
  })
})
