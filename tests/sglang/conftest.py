"""Fixtures for the SGLang integration tests (real SGLang 0.5.23 package, CPU only).

Tests that need SGLang call :func:`need_sglang` (skips with the reason when SGLang's server
modules cannot be imported). ``published`` installs SGLang's process-wide runtime config the
way SGLang's own unit tests do (``runtime_context.publish`` of a dummy ``ServerArgs``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

SKIP_REASON = ("SGLang is not importable in this environment; CI runs these tests in SGLang's venv "
               "(.ci/install.d/sglang.sh builds it, tests/sglang/test_sglang_venv.py runs them there)")


def need_sglang():
    """Import SGLang's server-argument module or skip the test with the install hint."""
    return pytest.importorskip("sglang.srt.server_args", reason=SKIP_REASON)


def _run_python(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def sglang_required():
    """Skip the test (with the install hint) unless SGLang's server modules import."""
    return need_sglang()


@pytest.fixture
def run_python():
    """``run_python(code)``: run code in a fresh interpreter of this environment, return the
    CompletedProcess (stdout/stderr captured as text)."""
    return _run_python


@pytest.fixture
def published():
    """SGLang runtime context for a CPU test process (reset afterwards). Yields the ServerArgs."""
    need_sglang()
    from sglang.srt.runtime_context import SpawnRanks, publish, reset_context
    from sglang.srt.server_args import ServerArgs

    from rocm_dsa.sglang.plugin import register

    register()
    args = ServerArgs(model_path="dummy", device="cpu", attention_backend="nsa-rocm")
    reset_context()
    publish(args, role="test", ranks=SpawnRanks(world_rank=0, dp_rank=None))
    try:
        yield args
    finally:
        reset_context()


def _dsa_model_runner(*, kv_dtype=torch.bfloat16, heads=4, index_topk=16, page_size=64, size=512, layers=1,
                     max_context=512, max_reqs=4, kv_cache_dim=None, **hf_extra):
    """A small CPU model runner with SGLang's real DSA KV pool and request pool.

    DeepSeek-V3.2 geometry (kv_lora 512, rope 64, indexer 128-dim keys, 64-token index pages),
    ``heads`` query heads, ``index_topk`` top-k width.
    """
    from sglang.srt.mem_cache.memory_pool import DSATokenToKVPool, ReqToTokenPool

    if kv_cache_dim is None:
        kv_cache_dim = 576 if kv_dtype == torch.bfloat16 else 656
    pool = DSATokenToKVPool(size=size, page_size=page_size, kv_lora_rank=512, dtype=kv_dtype, qk_rope_head_dim=64,
                            layer_num=layers, device="cpu", index_head_dim=128, enable_memory_saver=False,
                            kv_cache_dim=kv_cache_dim)
    req_pool = ReqToTokenPool(size=max_reqs, max_context_len=max_context, device="cpu", enable_memory_saver=False)
    hf = SimpleNamespace(architectures=["DeepseekV32ForCausalLM"], index_topk=index_topk, index_head_dim=128,
                         index_n_heads=64, **hf_extra)
    mc = SimpleNamespace(hf_config=hf, context_len=max_context, num_attention_heads=heads, qk_nope_head_dim=128,
                         kv_lora_rank=512, qk_rope_head_dim=64)
    return SimpleNamespace(device="cpu", page_size=page_size, model_config=mc, token_to_kv_pool=pool,
                           req_to_token_pool=req_pool, hisparse_coordinator=None, is_draft_worker=False,
                           kv_cache_dtype=kv_dtype, max_running_requests=max_reqs)


@pytest.fixture
def make_runner(published):
    """``make_runner(**kw)``: a small CPU DSA model runner (see :func:`_dsa_model_runner`)."""
    return _dsa_model_runner


@pytest.fixture
def no_cuda_capability():
    """SGLang's DSA backend reads torch.cuda.get_device_capability() in __init__; a CPU has none."""
    with mock.patch("torch.cuda.get_device_capability", return_value=(9, 4)):
        yield
