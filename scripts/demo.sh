#!/usr/bin/env bash
# Set up a search-only environment (no torch) and run assoc on the bundled example photos:
# index them, run three queries, and localize a phrase into overlay files under demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-search/bin/python ] || python3 -m venv .venv-search
.venv-search/bin/python -m pip install -q --disable-pip-version-check .
assoc=.venv-search/bin/assoc
export ASSOC_GALLERY="$PWD/demo-out/gallery"
mkdir -p demo-out
"$assoc" index examples/photos
for query in "a dog in the woods" "a red stop sign" "a cat eating from a bowl"; do
    echo "== assoc query \"$query\""
    "$assoc" query "$query" -k 3
done
"$assoc" localize examples/photos/000000525891.jpg "red stop sign" \
    --out demo-out/stop-sign.png --per-word
echo "overlays written to demo-out/"
