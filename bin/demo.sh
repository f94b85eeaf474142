#!/usr/bin/env bash
# The quick start: install, then mount the demo namespace from the embedded Azurite emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bin/setup.sh
mnt="${1:-${BLOBHSM_DEMO_DIR:-/tmp/blobhsm-demo}}"
mkdir -p "$mnt"
node bin/blobhsm.js mount "$mnt" --emulator --demo
echo "try: ls -l $mnt; cat $mnt/README.txt; node bin/blobhsm.js hsm_state $mnt/datasets/genome.fa"
echo "stop with: node bin/blobhsm.js unmount $mnt"
