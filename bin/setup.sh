#!/usr/bin/env bash
# Installs what blobhsm needs on a Debian/Ubuntu machine (libfuse3-dev, pkg-config and a C toolchain for the
# libfuse3 binding; libfuse2 for the fuse-native fallback; fuse3 for fusermount; attr for getfattr; acl for
# getfacl), then the npm dependencies, the binding and the build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2' || missing+=(libfuse2)
command -v fusermount >/dev/null 2>&1 || missing+=(fuse3)
command -v getfattr >/dev/null 2>&1 || missing+=(attr)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists fuse3 2>/dev/null || missing+=(libfuse3-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v getfacl >/dev/null 2>&1 || missing+=(acl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "blobhsm setup: please install ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "blobhsm setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  echo "blobhsm setup: /dev/fuse is missing: load the fuse kernel module (modprobe fuse) or run the container with --device /dev/fuse --cap-add SYS_ADMIN" >&2
  exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# npm ci builds the binding when it can; here it must be built (and is rebuilt when its source is newer).
addon=src/fuse/native/build/Release/blobhsm_fuse.node
if [ ! -f "$addon" ] || [ src/fuse/native/blobhsm_fuse.c -nt "$addon" ] || [ src/fuse/native/binding.gyp -nt "$addon" ]; then
  bash bin/build-addon.sh --required
fi
npx tsc -p tsconfig.json
