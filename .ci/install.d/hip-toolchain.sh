#!/usr/bin/env bash
# HIP device-only compile toolchain for the AMD compile reports (tests/hip, rocm-dsa compile):
# Debian 12's clang-19 + lld-19 and the HIP headers of libamdhip64-dev (/usr/include/hip).
# No GPU, no ROCm install. gfx950 code generation uses the LLVM inside the installed Triton
# (clang-19 predates gfx950). ~20 s on a fresh Debian 12 machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq clang-19 lld-19 libamdhip64-dev >/dev/null
clang++-19 --version | head -1
test -f /usr/include/hip/hip_runtime.h
