#!/usr/bin/env bash
# SGLang 0.5.23 for the tests in tests/sglang/ (CPU only: no sgl-kernel, flashinfer, GPU).
#
# sglang is installed with --no-deps, plus only the pure-Python packages the modules we import
# need (server_args, plugins, the DSA backend and indexer, memory pools, draft utils), pinned to
# the versions sglang 0.5.23 declares where it pins them. SGLang's import chain needs
# torchvision, and the only torchvision that installs is 0.29.1 beside torch 2.14.1 (both on the
# machine's disk), so:
#
#   * if the CI environment already runs torch 2.14.1 (.ci/run pins it), everything goes into
#     that environment and pytest runs tests/sglang in-process;
#   * otherwise a separate virtual environment is built at $ROCM_DSA_SGLANG_VENV
#     (default /opt/rocm-dsa/sglang-venv) with torch 2.14.1 + torchvision 0.29.1 + SGLang +
#     rocm-dsa (editable, --no-deps) and its test tools; tests/sglang/test_sglang_venv.py then
#     runs tests/sglang with that interpreter.
#
# Run by .ci/run after `pip install -e .[test]`; root on Debian 12. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

SGLANG_VERSION=0.5.23
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
# Imported by the sglang modules rocm-dsa uses (found by importing them with sglang --no-deps
# until nothing was missing); == pins are sglang 0.5.23's own.
SGLANG_IMPORT_DEPS=(
    "transformers==5.19.0" "tokenizers==0.23.2" "openai==2.8.0" "compressed-tensors==0.18.0"
    "sentencepiece==0.2.1" "apache-tvm-ffi==0.1.11"
    orjson msgspec pyzmq pydantic starlette aiohttp requests packaging psutil pybase64 tqdm
    ipython dill gguf partial_json_parser einops
)

t0=$(date +%s)
main_torch=$(python3 -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || echo none)

if [ "$main_torch" = "2.14.1" ]; then
    echo "sglang.sh: torch $main_torch in the CI environment: installing SGLang there"
    py=python3
    python3 -m pip install -q "${TORCH_PINS[@]}"
else
    venv=${ROCM_DSA_SGLANG_VENV:-/opt/rocm-dsa/sglang-venv}
    echo "sglang.sh: CI environment has torch $main_torch; SGLang gets its own venv at $venv"
    mkdir -p "$(dirname "$venv")"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    py=$venv/bin/python
    "$py" -m pip install -q "${TORCH_PINS[@]}"
    # rocm-dsa itself (editable: the venv runs this checkout) and what its tests import
    "$py" -m pip install -q "setuptools>=68" "msgpack>=1.0" "typer>=0.12" "rich>=13" "safetensors>=0.4" \
        "pytest>=8" "hypothesis>=6.100"
    "$py" -m pip install -q --no-deps --no-build-isolation -e .
fi
t1=$(date +%s)

"$py" -m pip install -q --no-deps "sglang==${SGLANG_VERSION}"
"$py" -m pip install -q "${SGLANG_IMPORT_DEPS[@]}"
# the deps above must not have moved torch
"$py" - <<'EOF'
import torch, torchvision
assert torch.__version__.split("+")[0] == "2.14.1", torch.__version__
EOF
t2=$(date +%s)

# smoke: what the tests need imports, and nsa-rocm parses
"$py" - <<'EOF'
import contextlib, io
from sglang.srt.plugins import load_plugins
from sglang.srt.server_args import prepare_server_args
import sglang.srt.layers.attention.dsa_backend  # noqa: F401
load_plugins()
from rocm_dsa.sglang.plugin import register
register()
args = prepare_server_args(["--model-path", "deepseek-ai/DeepSeek-V3.2", "--tp", "8",
                            "--attention-backend", "nsa-rocm"])
assert args.attention_backend == "nsa-rocm"
print("sglang.sh: sglang", __import__("sglang").__version__, "imports; nsa-rocm parses")
EOF
t3=$(date +%s)
echo "sglang.sh: torch $((t1 - t0))s, sglang + deps $((t2 - t1))s, smoke $((t3 - t2))s, total $((t3 - t0))s"
