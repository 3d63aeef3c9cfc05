// Envoy's bootstrap for an Endpoint Picker of ours, as GAIE's reference wiring has it: an
// ext_proc filter calling the EPP (full duplex or buffered), and the pool's pods as a STATIC
// cluster balanced by Envoy's override_host policy on the EPP's answer. Shared by
// test/epp-envoy.test.ts and the routing benchmark's EPP scenario (hack/bench/routing-epp.ts).

/**
 * How the response reaches the EPP. `body`: the response body too, in the request's mode (GAIE's
 * reference Envoy config: full duplex both ways) — every chunk makes a round trip through the EPP
 * before the client sees it, and the EPP reads usage from it. `headers`: the response headers only
 * (status, the served endpoint); the body goes straight to the client and the EPP's stream ends
 * with the HTTP stream. Tokens streamed are not delayed; the EPP has no usage to account.
 */
export type ResponsePhase = 'body' | 'headers'

/** Envoy's JSON (YAML) bootstrap: listener on `port`, admin on `adminPort`, EPP on `eppPort`. */
export function envoyConfig(
  port: number,
  adminPort: number,
  eppPort: number,
  mode: string,
  pods: readonly { address: string; port_value: number }[],
  response: ResponsePhase = 'body',
): string {
  const responseMode = response === 'body' ? mode : 'NONE'
  // JSON is YAML; Envoy reads either.
  return JSON.stringify({
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [
        {
          name: 'gateway',
          address: { socket_address: { address: '127.0.0.1', port_value: port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'gateway',
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [
                            {
                              match: { prefix: '/' },
                              route: {
                                cluster: 'pool',
                                timeout: '60s',
                                // A pod that resets or refuses before answering: the next endpoint
                                // of the EPP's list (override_host takes them in order).
                                retry_policy: {
                                  retry_on: 'reset,connect-failure,refused-stream',
                                  num_retries: 2,
                                },
                              },
                            },
                          ],
                        },
                      ],
                    },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.ext_proc',
                        typed_config: {
                          '@type':
                            'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
                          grpc_service: { envoy_grpc: { cluster_name: 'epp' }, timeout: '10s' },
                          processing_mode: {
                            request_header_mode: 'SEND',
                            response_header_mode: 'SEND',
                            request_body_mode: mode,
                            response_body_mode: responseMode,
                            // Full duplex requires trailers to be sent (Envoy refuses otherwise).
                            request_trailer_mode: mode === 'FULL_DUPLEX_STREAMED' ? 'SEND' : 'SKIP',
                            response_trailer_mode:
                              responseMode === 'FULL_DUPLEX_STREAMED' || response === 'headers'
                                ? 'SEND'
                                : 'SKIP',
                          },
                          message_timeout: '30s',
                          // The served endpoint (written by override_host) reaches the EPP.
                          metadata_options: { forwarding_namespaces: { untyped: ['envoy.lb'] } },
                        },
                      },
                      {
                        name: 'envoy.filters.http.router',
                        typed_config: {
                          '@type':
                            'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          // The pool's pods, load-balanced by Envoy's override_host policy: the EPP's list (header
          // or envoy.lb metadata) in order — primary, then the fallbacks on retries — and the pick
          // written back as envoy.lb/x-gateway-destination-endpoint-served. (ORIGINAL_DST with
          // use_http_header takes one address only, not the protocol's comma list.)
          name: 'pool',
          type: 'STATIC',
          connect_timeout: '2s',
          load_assignment: {
            cluster_name: 'pool',
            endpoints: [
              { lb_endpoints: pods.map((p) => ({ endpoint: { address: { socket_address: p } } })) },
            ],
          },
          load_balancing_policy: {
            policies: [
              {
                typed_extension_config: {
                  name: 'envoy.load_balancing_policies.override_host',
                  typed_config: {
                    '@type':
                      'type.googleapis.com/envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost',
                    override_host_sources: [
                      { header: 'x-gateway-destination-endpoint' },
                      {
                        metadata: {
                          key: 'envoy.lb',
                          path: [{ key: 'x-gateway-destination-endpoint' }],
                        },
                      },
                    ],
                    selected_host_key: {
                      key: 'envoy.lb',
                      path: [{ key: 'x-gateway-destination-endpoint-served' }],
                    },
                    fallback_policy: {
                      policies: [
                        {
                          typed_extension_config: {
                            name: 'envoy.load_balancing_policies.round_robin',
                            typed_config: {
                              '@type':
                                'type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin',
                            },
                          },
                        },
                      ],
                    },
                  },
                },
              },
            ],
          },
        },
        {
          name: 'epp',
          type: 'STATIC',
          connect_timeout: '2s',
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
          load_assignment: {
            cluster_name: 'epp',
            endpoints: [
              {
                lb_endpoints: [
                  {
                    endpoint: {
                      address: { socket_address: { address: '127.0.0.1', port_value: eppPort } },
                    },
                  },
                ],
              },
            ],
          },
        },
      ],
    },
  })
}
