#!/usr/bin/env bash
# A wheelhouse the VMs install netprobe from, through the synced folder (they have no network):
# the wheel of this checkout plus every dependency, for Debian 12's CPython 3.11 on x86_64.
#
#   tools/vm/wheelhouse.sh PYTHON DEST      # DEST is emptied first
set -euo pipefail
py=${1:?PYTHON} dest=${2:?DEST}
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$dest"; mkdir -p "$dest"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dest" "$root" 2>/dev/null \
  || "$py" -m pip wheel -q --no-deps -w "$dest" "$root"
whl=$(ls "$dest"/netprobe-*.whl)
# binary wheels only, for the guest's interpreter (not necessarily this one)
"$py" -m pip download -q --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$dest" "$whl" 2> >(grep -v "^WARNING: Location" >&2)
echo "wheelhouse: $(ls "$dest" | wc -l) wheels in $dest" >&2
