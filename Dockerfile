# The Mooring image: `mooring serve` (webhook and CA), the CLI, `mooring agent` (the entrypoint of
# the injected proxy container) and `mooring iptables` (the injected init container's program,
# with iptables installed). Non-root by default (UID/GID 65532); the init container gets root
# through its own securityContext (runAsUser 0, NET_ADMIN and NET_RAW).
#
#   docker build -t ghcr.io/mooring-dev/mooring:0.1.0 .
#   docker run --rm ghcr.io/mooring-dev/mooring:0.1.0 --help
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: the addon, TypeScript, then keep only the production dependencies ------------------
FROM ${NODE_IMAGE} AS build
# python3, make, g++: node-gyp builds the original-destination addon with this image's own Node
# headers (/usr/local/include/node): nothing is downloaded.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY native/original-dst ./native/original-dst
RUN bash native/original-dst/build.sh
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime ---------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# iptables: iptables-save/-restore and ip6tables-*, nft and legacy backends (mooring iptables
# detects which one the node uses).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# Where dist/agent/proxy/l4/original-dst.js looks for it.
COPY --from=build /src/native/original-dst/build/Release/original_dst.node ./native/original-dst/build/Release/
COPY bin ./bin
RUN chmod 0755 /app/bin/mooring.js \
 && ln -s /app/bin/mooring.js /usr/local/bin/mooring
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["mooring"]
CMD ["--help"]

LABEL org.opencontainers.image.title="mooring" \
      org.opencontainers.image.description="Service mesh for Kubernetes: injector, CA, mesh push and the sidecar proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mooring-dev/mooring"
