# One image for both roles (operator and data plane), on Node 24 LTS. It cannot be built on the
# dev machines (no Docker engine); CI verifies what goes into it: `npm run build` and
# hack/build.test.ts, which also runs dist/dataplane.mjs on Node 24 when that binary is cached
# (`npm run node:fetch`).
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# --no-sea: the image has Node already; the single executable is for hosts without it.
RUN npm run build -- --no-sea

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
# The bundles only: they need no node_modules (esbuild inlined every dependency).
COPY --from=build /src/dist/infer-gateway.mjs /src/dist/infer-gateway.mjs.map /app/
COPY --from=build /src/dist/dataplane.mjs /src/dist/dataplane.mjs.map /app/
USER 65532:65532
EXPOSE 8080
# Node is PID 1 and handles SIGTERM itself (graceful drain). Pick the role with the command:
#   data plane: ["/app/dataplane.mjs", "--snapshot", "/etc/infer-gateway/snapshot/snapshot.json.gz"]
#               (the data plane alone: no Kubernetes client inside; what install.yaml runs)
#   operator:   ["/app/infer-gateway.mjs", "operator", ...]
#   anything:   ["/app/infer-gateway.mjs", "<command>", ...]
ENTRYPOINT ["/nodejs/bin/node", "--enable-source-maps"]
CMD ["/app/infer-gateway.mjs", "--help"]
