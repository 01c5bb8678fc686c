#!/usr/bin/env bash
# Copy the CRDs the chart installs (crds.install) from .cache/crds (`make crds`: the Go modules
# istio.io/api and sigs.k8s.io/gateway-api, versions in .cache/crds/stamp) into
# charts/mooring/charts/crds/crd-files/, text for text: a chart cannot read .cache, so the copies are
# committed, and test/chart/crds.test.ts fails when they differ from upstream.
#   crd-files/istio/<name>.yaml        the VirtualService, DestinationRule, ServiceEntry,
#                                      Sidecar, WorkloadEntry, PeerAuthentication,
#                                      AuthorizationPolicy, RequestAuthentication and Telemetry
#                                      documents of kubernetes/customresourcedefinitions.gen.yaml
#   crd-files/gateway-api/<file>.yaml  every CRD of the standard channel (config/crd/standard,
#                                      what standard-install.yaml bundles, without its
#                                      ValidatingAdmissionPolicy safe-upgrades)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/.cache/crds"
DEST="$ROOT/charts/mooring/charts/crds/crd-files"
ISTIO_CRDS=(virtualservices.networking.istio.io destinationrules.networking.istio.io serviceentries.networking.istio.io sidecars.networking.istio.io workloadentries.networking.istio.io peerauthentications.security.istio.io authorizationpolicies.security.istio.io requestauthentications.security.istio.io telemetries.telemetry.istio.io)

die() {
  printf '[chart-crds] ERROR: %s\n' "$*" >&2
  exit 1
}
[ -f "$SRC/istio.yaml" ] && [ -d "$SRC/gateway-api-standard" ] || die "no CRDs in $SRC: run make crds"

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/istio" "$DEST.tmp/gateway-api"
# One file per document of Istio's multi-document file (documents end at a line `---`), kept for
# the Istio CRDs Mooring reads, named after metadata.name (the first line `  name: ` of a CRD).
awk -v dir="$DEST.tmp/istio" -v want="${ISTIO_CRDS[*]}" '
  BEGIN { n = split(want, names, " "); for (i = 1; i <= n; i++) wanted[names[i]] = 1 }
  function flush() {
    if (name in wanted) { printf "%s", doc > (dir "/" name ".yaml"); close(dir "/" name ".yaml"); found++ }
    doc = ""; name = ""
  }
  /^---$/ { flush(); next }
  { doc = doc $0 "\n" }
  name == "" && /^  name: / { name = substr($0, 9) }
  END { flush(); if (found != n) { print "found " found " of " n " CRDs" > "/dev/stderr"; exit 1 } }
' "$SRC/istio.yaml"
cp "$SRC"/gateway-api-standard/gateway.networking.k8s.io_*.yaml "$DEST.tmp/gateway-api/"
cp "$SRC/stamp" "$DEST.tmp/VERSIONS"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
printf '[chart-crds] %s: %s\n' "${DEST#"$ROOT"/}" "$(cat "$DEST/VERSIONS")"
