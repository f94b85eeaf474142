#!/usr/bin/env bash
# The quick start: install (system packages, npm dependencies, build, `blobhsm` on PATH), then mount the demo
# namespace from the embedded Azurite emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bin/setup.sh
# Puts `blobhsm` on PATH by linking this clone into npm's global prefix (as `npm install -g .` does).
if ! npm install -g . --no-audit --no-fund >/dev/null 2>&1; then
  echo "blobhsm demo: could not link blobhsm into $(npm prefix -g)/bin; run 'sudo npm install -g .' here, or use node bin/blobhsm.js" >&2
fi
mnt="${1:-${BLOBHSM_DEMO_DIR:-/tmp/blobhsm-demo}}"
mkdir -p "$mnt"
node bin/blobhsm.js mount "$mnt" --emulator --demo
echo "try: ls -l $mnt; cat $mnt/README.txt; blobhsm hsm_state $mnt/datasets/genome.fa"
echo "stop with: blobhsm unmount $mnt"
