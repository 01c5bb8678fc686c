#!/usr/bin/env bash
# Build the original-destination addon (original_dst.c) into build/Release/original_dst.node with
# node-gyp (the devDependency) and the headers of the Node that runs it, never downloading them:
#   --nodedir=<prefix of `node` on PATH>  when that prefix has include/node/node_api.h
#   --nodedir=.cache/node                 otherwise (hack/node.sh installs the pinned Node there)
# A ~/.npmrc nodedir= (another Node's headers), even exported by `npm run`, is ignored.
# Needs python3, make and a C compiler (g++ brings gcc). `make addon` runs it; so do .ci/run
# (through make) and the Dockerfile's build stage.
# Idempotent: build/mooring-stamp names the Node version and the hash of the sources; a matching
# stamp and an existing addon mean nothing is done. FORCE=1 rebuilds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ADDON="$HERE/build/Release/original_dst.node"
STAMP="$HERE/build/mooring-stamp"
NODE_GYP="$ROOT/node_modules/node-gyp/bin/node-gyp.js"

log() { printf '[addon] %s\n' "$*" >&2; }
die() {
  printf '[addon] ERROR: %s\n' "$*" >&2
  exit 1
}

[ "$(uname -s)" = Linux ] ||
  die "the original-destination addon is Linux only (SO_ORIGINAL_DST is netfilter's)"
command -v node >/dev/null || die 'node is not on PATH (make puts Node 24 there: run `make addon`)'
[ -f "$NODE_GYP" ] || die "node-gyp is not installed in $ROOT/node_modules: run \`npm ci\` first"

node_version="$(node -p process.version)"
sources_hash="$(cd "$HERE" && cat original_dst.c binding.gyp | sha256sum | cut -d' ' -f1)"
want="node=$node_version sources=$sources_hash"
if [ "${FORCE:-0}" != 1 ] && [ -f "$ADDON" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

prefix="$(node -p 'require("path").resolve(process.execPath, "../..")')"
if [ -f "$prefix/include/node/node_api.h" ]; then
  nodedir="$prefix"
else
  log "$prefix has no include/node/node_api.h: taking the headers from .cache/node"
  nodedir="$(cd "$(MOORING_NODE_FORCE=1 bash "$ROOT/hack/node.sh")/.." && pwd)"
fi
[ -f "$nodedir/include/node/node_api.h" ] || die "no Node headers in $nodedir/include/node"
for tool in python3 make cc; do
  command -v "$tool" >/dev/null ||
    die "$tool is not installed: node-gyp needs python3, make and a C compiler" \
      '(apt-get install python3 make g++)'
done

# node-gyp lets npm_config_* variables override its command line (`npm run` exports a ~/.npmrc
# nodedir= as npm_config_nodedir): none of them may choose the headers or where to fetch them.
for name in $(compgen -e | grep -i '^npm_config_' || true); do unset "$name"; done

start=$(date +%s%N)
log "node-gyp rebuild for Node $node_version with the headers of $nodedir"
(cd "$HERE" && node "$NODE_GYP" rebuild --nodedir="$nodedir" --loglevel=warn)
node -e 'require(process.argv[1])' "$ADDON" ||
  die "$ADDON was built but Node $node_version cannot load it"
printf '%s\n' "$want" >"$STAMP"
log "built build/Release/original_dst.node in $((($(date +%s%N) - start) / 1000000)) ms"
