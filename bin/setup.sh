#!/usr/bin/env bash
# Installs what blobhsm needs on a Debian/Ubuntu machine (libfuse2 for fuse-native, fuse3 for fusermount, attr for
# getfattr), then the npm dependencies and the build. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2' || missing+=(libfuse2)
command -v fusermount >/dev/null 2>&1 || missing+=(fuse3)
command -v getfattr >/dev/null 2>&1 || missing+=(attr)
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
npx tsc -p tsconfig.json
