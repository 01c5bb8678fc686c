#!/usr/bin/env bash
# Build the OCI images that the test cluster's node runs (test/e2e/harness/node.ts), without any
# registry or Docker engine: files staged here, packed by umoci into one OCI layout,
# .cache/images/oci, that the harness streams into containerd (`ctr images import`).
#
#   ghcr.io/mooring-dev/mooring:<version>  the Dockerfile's runtime stage, file for file: Node 24
#                                          (.cache/node), dist/, production node_modules, bin/,
#                                          iptables (nft and legacy) with its libraries and
#                                          xtables modules; USER 65532, ENTRYPOINT mooring
#   localhost/mooring-e2e-echo:<stamp>     the test app (test/e2e-node/echo/echo.ts): Node 24 alone
#   registry.k8s.io/pause:3.10.2           Kubernetes' own pause.c (from the kubernetes module),
#                                          under containerd's exact sandbox_image name
#
# The mooring and echo images share their first layer (Node and the C libraries it needs), so
# containerd stores it once. Each layer has a stamp naming what it was built from; a matching
# stamp means nothing is done (a few seconds: hashing dist/). FORCE=1 rebuilds. Writes
# .cache/images/images.json: {"mooring": REF, "echo": REF, "pause": REF, "layout": DIR}.
# Needs: umoci, cc (static libc), ldd, npm (from .cache/node), go (the kubernetes module, in the
# module cache once test/e2e/harness/build-control-plane.sh ran).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.cache/images"
LAYOUT="$OUT/oci"
STAMPS="$OUT/.stamps"
# Bump when the recipe below changes: it forces a rebuild of every image.
RECIPE=1
PAUSE_VERSION=3.10.2
K8S_VERSION="${K8S_VERSION:-v1.36.3}"

log() { printf '[images] %s\n' "$*"; }
die() {
  printf '[images] ERROR: %s\n' "$*" >&2
  exit 1
}
for tool in umoci cc ldd sha256sum; do
  command -v "$tool" >/dev/null || die "$tool is not installed (.ci/run's apt-get line has it)"
done

# The pinned Node, whatever the machine's own is: the image carries exactly this one.
NODE_BIN_DIR="$(MOORING_NODE_FORCE=1 bash "$ROOT/hack/node.sh")"
export PATH="$NODE_BIN_DIR:$PATH"
NODE_VERSION="$(node -p process.versions.node)"
PKG_VERSION="$(node -p "require('$ROOT/package.json').version")"
MOORING_REF="${MOORING_IMAGE:-ghcr.io/mooring-dev/mooring:$PKG_VERSION}"
PAUSE_REF="registry.k8s.io/pause:$PAUSE_VERSION"

mkdir -p "$OUT" "$STAMPS"
start=$(date +%s)
stage="$(mktemp -d "$OUT/stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

# hash_tree DIR...: one digest for the names and contents of every file under the given paths.
hash_tree() {
  local p existing=()
  for p in "$@"; do [ -e "$ROOT/$p" ] && existing+=("$p"); done
  if [ "${#existing[@]}" -eq 0 ]; then
    echo none
    return
  fi
  (cd "$ROOT" && find "${existing[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) |
    sha256sum | cut -c1-16
}
stamp_ok() { [ "${FORCE:-0}" != 1 ] && [ "$(cat "$STAMPS/$1" 2>/dev/null)" = "$2" ]; }

# copy_with_libs ROOTFS FILE...: each ELF file and every shared library it loads (ldd), at the
# same paths, plus the dynamic loader.
copy_with_libs() {
  local rootfs="$1" f lib
  shift
  for f in "$@"; do
    while read -r lib; do
      [ -n "$lib" ] || continue
      mkdir -p "$rootfs$(dirname "$lib")"
      [ -e "$rootfs$lib" ] || cp -L "$lib" "$rootfs$lib"
    done < <(ldd "$f" 2>/dev/null | sed -n 's#.*=> \(/[^ ]*\) .*#\1#p; s#^[[:space:]]*\(/[^ ]*\) (.*#\1#p')
  done
}

# tag_image TAG REF: annotate the layout's index entry of TAG with the full reference, which
# `ctr images import` uses as the image's name (io.containerd.image.name).
tag_image() {
  node -e '
    const fs = require("fs");
    const [file, tag, ref] = process.argv.slice(1);
    const index = JSON.parse(fs.readFileSync(file, "utf8"));
    for (const m of index.manifests) {
      const a = m.annotations ?? {};
      if (a["org.opencontainers.image.ref.name"] === tag) {
        m.annotations = { ...a, "io.containerd.image.name": ref };
      }
    }
    fs.writeFileSync(file, JSON.stringify(index));
  ' "$LAYOUT/index.json" "$1" "$2"
}

[ -f "$LAYOUT/oci-layout" ] || umoci init --layout "$LAYOUT"

# ---------------------------------------------------------------------------------------------
# pause: Kubernetes' pause.c, static, as the only file of the image.
command -v go >/dev/null || die 'go is not on PATH (the pause source comes from the kubernetes module)'
# The kubernetes module is in the module cache once build-control-plane.sh ran; else fetched.
k8s_dir="$(cd "$stage" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
pause_src="$k8s_dir/build/pause/linux/pause.c"
[ -f "$pause_src" ] || die "no pause.c in k8s.io/kubernetes@$K8S_VERSION ($pause_src)"
PAUSE_STAMP="recipe=$RECIPE pause=$PAUSE_VERSION src=$(sha256sum <"$pause_src" | cut -c1-16) $(cc -dumpfullversion)"
if stamp_ok pause "$PAUSE_STAMP"; then
  log "pause: up to date"
else
  mkdir -p "$stage/pause"
  cc -Os -static -DVERSION="$PAUSE_VERSION" -o "$stage/pause/pause" "$pause_src"
  strip "$stage/pause/pause"
  umoci rm --image "$LAYOUT:pause" 2>/dev/null || true
  umoci new --image "$LAYOUT:pause"
  umoci insert --history.created_by hack/build-images.sh --image "$LAYOUT:pause" "$stage/pause/pause" /pause
  umoci config --history.created_by hack/build-images.sh --image "$LAYOUT:pause" --config.entrypoint /pause \
    --config.user 65535:65535
  tag_image pause "$PAUSE_REF"
  printf '%s\n' "$PAUSE_STAMP" >"$STAMPS/pause"
  log "pause: built $PAUSE_REF"
fi

# ---------------------------------------------------------------------------------------------
# base: Node and its C libraries, a passwd with the users the images run as, /tmp.
BASE_STAMP="recipe=$RECIPE node=$NODE_VERSION libs=$(ldd "$NODE_BIN_DIR/node" | awk '{print $1, $3}' | sha256sum | cut -c1-16)"
base_rebuilt=0
if stamp_ok base "$BASE_STAMP"; then
  log "base (Node $NODE_VERSION): up to date"
else
  r="$stage/base"
  mkdir -p "$r/usr/local/bin" "$r/usr/bin" "$r/etc" "$r/tmp" "$r/usr/lib/x86_64-linux-gnu"
  chmod 1777 "$r/tmp"
  cp "$NODE_BIN_DIR/node" "$r/usr/local/bin/node"
  # mooring.js starts with `#!/usr/bin/env node`.
  cp /usr/bin/env "$r/usr/bin/env"
  copy_with_libs "$r" "$r/usr/local/bin/node" /usr/bin/env
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'mooring-proxy:x:1337:1337::/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532::/nonexistent:/sbin/nologin' 'nobody:x:65534:65534::/nonexistent:/sbin/nologin' \
    >"$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'mooring-proxy:x:1337:' 'nonroot:x:65532:' 'nogroup:x:65534:' >"$r/etc/group"
  umoci rm --image "$LAYOUT:base" 2>/dev/null || true
  umoci new --image "$LAYOUT:base"
  umoci insert --history.created_by hack/build-images.sh --image "$LAYOUT:base" "$r" /
  tag_image base "localhost/mooring-e2e-base:$NODE_VERSION"
  # What the layers above need not carry again.
  (cd "$r" && find . -type f | sed 's#^\.##') >"$OUT/base.files"
  printf '%s\n' "$BASE_STAMP" >"$STAMPS/base"
  base_rebuilt=1
  log "base: built (Node $NODE_VERSION)"
fi

# ---------------------------------------------------------------------------------------------
# mooring: the Dockerfile's runtime stage, in two layers over the base: what changes with
# package-lock.json or the system (production node_modules, iptables), then what changes with
# every build (dist/, bin/, the addon), so that a code change repacks a few MB only.
[ -f "$ROOT/dist/cli/main.js" ] || die 'dist/ is missing: make build first'
ADDON_DIR=native/original-dst/build/Release
IPTABLES_VERSION="$(dpkg-query -W -f '${Version}' iptables 2>/dev/null || echo none)"
DEPS_STAMP="recipe=$RECIPE base=$(cat "$STAMPS/base") iptables=$IPTABLES_VERSION"
DEPS_STAMP+=" lock=$(hash_tree package-lock.json)"
deps_rebuilt=0
if [ "$base_rebuilt" = 0 ] && stamp_ok mooring-deps "$DEPS_STAMP"; then
  log "mooring dependencies: up to date"
else
  r="$stage/deps"
  mkdir -p "$r/app" "$r/usr/sbin" "$r/etc"
  # Production dependencies, as the Dockerfile's `npm prune --omit=dev`, from a hard-linked copy.
  log 'production node_modules (npm prune --omit=dev of a copy)'
  mkdir -p "$stage/prod"
  cp "$ROOT/package.json" "$ROOT/package-lock.json" "$stage/prod/"
  cp -al "$ROOT/node_modules" "$stage/prod/node_modules"
  (cd "$stage/prod" && npm prune --omit=dev --offline --no-audit --no-fund --ignore-scripts \
    --loglevel=error >/dev/null)
  mv "$stage/prod/node_modules" "$r/app/node_modules"
  # iptables as Debian installs it: the two multi-call binaries, the names that point at them
  # (`iptables` is the nft one, Debian's default alternative), the xtables modules, the libraries.
  cp /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$r/usr/sbin/"
  for fam in iptables ip6tables; do
    for suffix in "" -save -restore; do
      ln -s xtables-nft-multi "$r/usr/sbin/$fam$suffix"
      ln -s xtables-nft-multi "$r/usr/sbin/$fam-nft$suffix"
      ln -s xtables-legacy-multi "$r/usr/sbin/$fam-legacy$suffix"
    done
  done
  mkdir -p "$r/usr/lib/x86_64-linux-gnu/xtables"
  cp /usr/lib/x86_64-linux-gnu/xtables/*.so "$r/usr/lib/x86_64-linux-gnu/xtables/"
  copy_with_libs "$r" "$r"/usr/sbin/xtables-*-multi "$r"/usr/lib/x86_64-linux-gnu/xtables/*.so
  # The base layer has these already (the C library...): keep one copy.
  while read -r f; do rm -f "$r$f"; done <"$OUT/base.files"
  for f in /etc/protocols /etc/services /etc/ethertypes; do [ -f "$f" ] && cp "$f" "$r$f"; done
  umoci rm --image "$LAYOUT:mooring-deps" 2>/dev/null || true
  umoci insert --history.created_by hack/build-images.sh --image "$LAYOUT:base" \
    --tag mooring-deps "$r" /
  tag_image mooring-deps "localhost/mooring-e2e-deps:$NODE_VERSION"
  printf '%s\n' "$DEPS_STAMP" >"$STAMPS/mooring-deps"
  deps_rebuilt=1
  log "mooring dependencies: built"
fi

MOORING_STAMP="recipe=$RECIPE ref=$MOORING_REF deps=$(cat "$STAMPS/mooring-deps")"
MOORING_STAMP+=" dist=$(hash_tree dist bin package.json) addon=$(hash_tree "$ADDON_DIR")"
if [ "$deps_rebuilt" = 0 ] && stamp_ok mooring "$MOORING_STAMP"; then
  log "mooring: up to date ($MOORING_REF)"
else
  r="$stage/mooring"
  mkdir -p "$r/app" "$r/usr/local/bin"
  cp "$ROOT/package.json" "$r/app/package.json"
  cp -r "$ROOT/dist" "$ROOT/bin" "$r/app/"
  chmod 0755 "$r/app/bin/mooring.js"
  ln -s /app/bin/mooring.js "$r/usr/local/bin/mooring"
  # The original-destination addon (native/, built by `make build`): the one place where it
  # enters the image, at the same path under /app as in the repository.
  if compgen -G "$ROOT/$ADDON_DIR/*.node" >/dev/null; then
    mkdir -p "$r/app/$ADDON_DIR"
    cp "$ROOT/$ADDON_DIR"/*.node "$r/app/$ADDON_DIR/"
  fi
  umoci rm --image "$LAYOUT:mooring" 2>/dev/null || true
  umoci insert --history.created_by hack/build-images.sh --image "$LAYOUT:mooring-deps" \
    --tag mooring "$r" /
  umoci config --history.created_by hack/build-images.sh --image "$LAYOUT:mooring" \
    --config.user 65532:65532 --config.workingdir /app --config.entrypoint mooring \
    --config.cmd=--help --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env NODE_ENV=production --config.exposedports 8443/tcp \
    --config.exposedports 9090/tcp \
    --config.label org.opencontainers.image.title=mooring \
    --config.label org.opencontainers.image.source=https://github.com/mooring-dev/mooring
  tag_image mooring "$MOORING_REF"
  printf '%s\n' "$MOORING_STAMP" >"$STAMPS/mooring"
  log "mooring: built $MOORING_REF"
fi

# ---------------------------------------------------------------------------------------------
# echo: the test app, compiled from TypeScript, on the same base layer.
ECHO_SRC=test/e2e-node/echo
ECHO_HASH="$(hash_tree "$ECHO_SRC")"
ECHO_REF="localhost/mooring-e2e-echo:$ECHO_HASH"
ECHO_STAMP="recipe=$RECIPE ref=$ECHO_REF base=$(cat "$STAMPS/base") lock=$(hash_tree package-lock.json)"
if [ "$base_rebuilt" = 0 ] && stamp_ok echo "$ECHO_STAMP"; then
  log "echo: up to date ($ECHO_REF)"
else
  r="$stage/echo"
  mkdir -p "$r/app"
  "$ROOT/node_modules/.bin/tsc" -p "$ROOT/$ECHO_SRC/tsconfig.json" --outDir "$r/app"
  # Its one dependency, @grpc/grpc-js, with everything that it requires (top-level packages of
  # node_modules, found as Node's resolution would).
  node -e '
    const fs = require("fs"), path = require("path");
    const root = process.argv[1], seen = new Set();
    const visit = (name, from) => {
      for (let dir = from; ; dir = path.dirname(dir)) {
        const p = path.join(dir, "node_modules", name);
        if (fs.existsSync(path.join(p, "package.json"))) {
          if (seen.has(p)) return;
          seen.add(p);
          const deps = require(path.join(p, "package.json")).dependencies ?? {};
          for (const d of Object.keys(deps)) visit(d, p);
          return;
        }
        if (dir === root) throw new Error(`${name} (needed by ${from}) is not installed`);
      }
    };
    visit("@grpc/grpc-js", root);
    for (const p of seen) {
      const rel = path.relative(root, p);
      if (!/node_modules.*node_modules/.test(rel)) console.log(rel);
    }
  ' "$ROOT" | while read -r dep; do
    mkdir -p "$r/app/$(dirname "$dep")"
    cp -al "$ROOT/$dep" "$r/app/$dep"
  done
  umoci rm --image "$LAYOUT:echo" 2>/dev/null || true
  umoci insert --history.created_by hack/build-images.sh --image "$LAYOUT:base" --tag echo "$r" /
  umoci config --history.created_by hack/build-images.sh --image "$LAYOUT:echo" --config.user 65532:65532 \
    --config.workingdir /app --config.entrypoint /usr/local/bin/node \
    --config.cmd /app/echo.js --config.env NODE_ENV=production
  tag_image echo "$ECHO_REF"
  printf '%s\n' "$ECHO_STAMP" >"$STAMPS/echo"
  log "echo: built $ECHO_REF"
fi

umoci gc --layout "$LAYOUT"
node -e '
  const [file, layout, mooring, echo, pause] = process.argv.slice(1);
  require("fs").writeFileSync(file, JSON.stringify({ layout, mooring, echo, pause }, null, 2) + "\n");
' "$OUT/images.json" "$LAYOUT" "$MOORING_REF" "$ECHO_REF" "$PAUSE_REF"
log "done in $(($(date +%s) - start)) s: $(du -sh "$LAYOUT" | cut -f1) in $LAYOUT"
