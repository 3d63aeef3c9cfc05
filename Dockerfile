# One image for both roles (operator and data plane). It cannot be built on the dev machines
# (no Docker engine); CI verifies what goes into it: `npm run build` and the bundle test.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build

FROM gcr.io/distroless/nodejs20-debian12:nonroot
WORKDIR /app
COPY --from=build /src/dist/ /app/
USER 65532:65532
EXPOSE 8080
# Node is PID 1 and handles SIGTERM itself (graceful drain). Pick the role with the command:
#   data plane: ["/app/dataplane.mjs", "--snapshot", "/etc/infer-gateway/snapshot/snapshot.json.gz"]
#   anything:   ["/app/infer-gateway.mjs", "<command>", ...]
ENTRYPOINT ["/nodejs/bin/node", "--enable-source-maps"]
CMD ["/app/infer-gateway.mjs", "--help"]
