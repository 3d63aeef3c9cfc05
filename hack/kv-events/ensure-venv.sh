#!/usr/bin/env bash
# A Python venv with msgspec and cbor2 from PyPI (cached outside the repo) for test/kv-events-msgspec:
# vLLM's own encoder library writes the batches our decoder must read, and cbor2 computes vLLM's
# sha256_cbor block hashes. Prints the venv's python path.
set -euo pipefail
dir="${HOME}/.cache/infer-gateway/kv-events-venv"
if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import msgspec, cbor2' 2>/dev/null; then
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q 'msgspec==0.19.0' 'cbor2==5.6.5' >&2
fi
echo "$dir/bin/python"
