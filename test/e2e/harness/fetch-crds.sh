#!/usr/bin/env bash
# Fetch (once, cached) the CRDs of the traffic APIs Mooring reads, from their Go modules through
# the Go module proxy (nothing is built):
#   .cache/crds/istio.yaml                     istio.io/api kubernetes/customresourcedefinitions.gen.yaml
#   .cache/crds/gateway-api-standard/*.yaml    sigs.k8s.io/gateway-api config/crd/standard
#   .cache/crds/gateway-api-experimental/*.yaml sigs.k8s.io/gateway-api config/crd/experimental
# The end-to-end tests install them into their kube-apiserver as a user would. Idempotent: a stamp
# names the versions; a matching stamp means nothing is done. FORCE=1 fetches again.
set -euo pipefail

ISTIO_API_VERSION="${ISTIO_API_VERSION:-v1.32.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.3}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
DEST="$ROOT/.cache/crds"
STAMP="$DEST/stamp"

export GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"

log() { printf '[crds] %s\n' "$*"; }
die() {
  printf '[crds] ERROR: %s\n' "$*" >&2
  exit 1
}

command -v go >/dev/null || die 'go is not on PATH (the CRDs come from Go modules)'
WANT="istio.io/api=$ISTIO_API_VERSION sigs.k8s.io/gateway-api=$GATEWAY_API_VERSION"
if [ "${FORCE:-0}" != 1 ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  log "up to date ($WANT)"
  exit 0
fi

module_dir() {
  (cd "$(mktemp -d)" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
}

log "downloading istio.io/api@$ISTIO_API_VERSION and sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION through $(go env GOPROXY)"
istio="$(module_dir "istio.io/api@$ISTIO_API_VERSION")"
gateway="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
[ -f "$istio/kubernetes/customresourcedefinitions.gen.yaml" ] || die "no CRDs in istio.io/api@$ISTIO_API_VERSION"
[ -d "$gateway/config/crd/standard" ] || die "no CRDs in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/gateway-api-standard" "$DEST.tmp/gateway-api-experimental"
cp "$istio/kubernetes/customresourcedefinitions.gen.yaml" "$DEST.tmp/istio.yaml"
for channel in standard experimental; do
  # The CRDs only (the kustomization and the ValidatingAdmissionPolicy are not needed).
  for f in "$gateway/config/crd/$channel"/gateway.networking.*.yaml; do
    case "$f" in *_vap_*) continue ;; esac
    cp "$f" "$DEST.tmp/gateway-api-$channel/"
  done
done
chmod -R u+w "$DEST.tmp"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
printf '%s\n' "$WANT" >"$STAMP"
log "CRDs in .cache/crds ($WANT)"
