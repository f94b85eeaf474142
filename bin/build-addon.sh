#!/usr/bin/env bash
# Builds the libfuse3 binding (src/fuse/native/binding.gyp) with node-gyp: run by `npm ci`/`npm install` (the
# package's install script) and by bin/setup.sh. node-gyp wants binding.gyp at the package root unless pointed at a
# directory, so it gets --directory and the package root stays as it is. The Node headers are taken from beside the
# running node when they are there (no download, whatever the user's npm config says).
# Without --required a failed build is not an error: blobhsm then mounts with fuse-native and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
required=0
[ "${1:-}" = "--required" ] && required=1
give_up() {
  echo "blobhsm: the libfuse3 binding was not built: $1; mounts will use fuse-native (npm run setup installs what is missing)" >&2
  exit $((required))
}
pkg-config --exists fuse3 2>/dev/null || give_up "libfuse3-dev is not installed (pkg-config fuse3)"
gyp="${npm_config_node_gyp:-}"
if [ -z "$gyp" ] || [ ! -f "$gyp" ]; then
  npm_dir="$(dirname "$(readlink -f "$(command -v npm)")")/.."
  gyp="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
fi
[ -f "$gyp" ] || give_up "node-gyp was not found (it comes with npm)"
prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
nodedir=()
[ -f "$prefix/include/node/node_api.h" ] && nodedir=(--nodedir="$prefix")
log=$(mktemp)
if ! node "$gyp" rebuild --directory=src/fuse/native "${nodedir[@]}" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  rm -f "$log"
  give_up "node-gyp failed (output above)"
fi
rm -f "$log"
echo "blobhsm: built the libfuse3 binding (src/fuse/native/build/Release/blobhsm_fuse.node)"
