#!/usr/bin/env bash
# Set up .venv with everything (training extras, torchvision, Qdrant client, test tools), then lint and
# run the whole test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.1 -e '.[train,vision,qdrant,heic,test]'
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
