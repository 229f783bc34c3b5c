#!/usr/bin/env bash
# Set up .venv with everything (training extras, torchvision, Qdrant client, RAW, Ray, web server, OpenCLIP,
# test tools), then lint and run the whole test suite. Extra arguments go to pytest (e.g. -m "not slow").
# The web app's browser tests drive Debian's headless Chromium: it is installed here where it is missing
# and apt-get can (as root, as in CI); elsewhere only those tests skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.1 -e '.[train,vision,qdrant,heic,raw,ray,serve,test,clip]'
if ! { command -v chromium && command -v chromedriver; } > /dev/null && command -v apt-get > /dev/null \
    && [ "$(id -u)" = 0 ]; then
    (apt-get update -q && apt-get install -y -q chromium chromium-driver) > /dev/null \
        || echo "could not install chromium: the web app's browser tests will skip" >&2
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
