"""Triton provider: portable kernels (ROCm first, also NVIDIA) for every op.

Each op calls one launcher in ``rocm_dsa.triton_kernels.<module>`` (sources in the repo's
``triton_kernels/``), imported on first use so that ``import rocm_dsa`` never loads Triton.
A launcher takes exactly this provider method's arguments plus the keyword ``arch`` (from
:func:`rocm_dsa.platform.detect`), and reads its tuning from ``rocm_dsa/configs/<arch>/``.

Availability: needs an importable ``triton``; runs on GPUs (ROCm devices are "cuda" in torch)
and, for tests, on the CPU when ``TRITON_INTERPRET=1`` is set (Triton's interpreter; slow).
An op whose launcher module is not present yet is reported unavailable with the module name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os

from ..platform import detect
from . import OPS, Case, Provider

#: op -> (module under rocm_dsa.triton_kernels, launcher function)
LAUNCHERS: dict[str, tuple[str, str]] = {
    "indexer_logits": ("indexer", "indexer_logits"),
    "indexer_logits_paged": ("indexer", "indexer_logits_paged"),
    "topk_indices": ("topk", "topk_indices"),
    "indexer_topk": ("indexer_topk", "indexer_topk"),
    "indexer_topk_paged": ("indexer_topk", "indexer_topk_paged"),
    "sparse_mla_prefill": ("sparse_mla", "sparse_mla_prefill"),
    "sparse_mla_decode": ("sparse_mla", "sparse_mla_decode"),
    "store_indexer_k": ("cache_store", "store_indexer_k"),
    "store_mla_kv": ("cache_store", "store_mla_kv"),
}

_PKG = "rocm_dsa.triton_kernels"
_NO_GPU = "no GPU (set TRITON_INTERPRET=1 to run kernels in the interpreter)"
_INDEXER_OPS = frozenset({"indexer_logits", "indexer_logits_paged", "indexer_topk", "indexer_topk_paged"})


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def _module_reason(module: str, func: str) -> str | None:
    """Why launcher ``module.func`` cannot be used (None = it can). Imports the module."""
    name = f"{_PKG}.{module}"
    try:
        if importlib.util.find_spec(name) is None:
            return f"kernel module {name} not present yet"
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        return f"kernel module {name} not present yet" if e.name == name else f"cannot import {e.name!r} ({e})"
    except Exception as e:  # noqa: BLE001 - a broken kernel file must not break the registry
        return f"kernel module {name} failed to load: {type(e).__name__}: {e}"
    if not callable(getattr(mod, func, None)):
        return f"kernel module {name} has no launcher {func}()"
    return None


def _launcher(op: str):
    module, func = LAUNCHERS[op]
    why = _module_reason(module, func)
    if why:
        raise RuntimeError(f"triton provider cannot run {op}: {why}")
    return getattr(importlib.import_module(f"{_PKG}.{module}"), func)


class TritonProvider(Provider):
    name = "triton"
    ops = frozenset(OPS)
    devices = frozenset({"cpu", "cuda"})
    description = "Triton kernels (ROCm gfx942/gfx950 first, also NVIDIA; CPU only via TRITON_INTERPRET=1)"

    @functools.lru_cache(maxsize=1)  # noqa: B019 - one provider object for the process
    def unavailable_reason(self) -> str | None:
        # find, do not import: triton decorates its own library functions for the interpreter
        # or the GPU when first imported, so an import here (before TRITON_INTERPRET is set)
        # would fix the process to the GPU path
        try:
            found = importlib.util.find_spec("triton") is not None
        except (ImportError, ValueError) as e:
            return f"triton is not importable ({type(e).__name__}: {e})"
        return None if found else "triton is not installed"

    def case_reasons(self, case: Case) -> list[str]:
        reasons = []
        if case.op in _INDEXER_OPS:
            d = case.get("head_dim", 128)
            if d < 16 or d & (d - 1):
                reasons.append(f"needs a power-of-two head_dim >= 16, not {d}")
        if case.device == "cpu" and not _interpreting():
            # kernels are decorated for the interpreter or the GPU at first import: importing
            # them here, without TRITON_INTERPRET, would fix this process to the GPU path
            return [_NO_GPU] + reasons
        why = _module_reason(*LAUNCHERS[case.op])
        if why:
            reasons.append(why)
        return reasons

    # --- ops: validated arguments from rocm_dsa.ops, plus the target arch --------------------
    def indexer_logits(self, q_fp8, k_fp8, k_scale, weights, ks, ke):
        return _launcher("indexer_logits")(q_fp8, k_fp8, k_scale, weights, ks, ke, arch=detect(q_fp8.device).arch)

    def indexer_logits_paged(self, q_fp8, buf, weights, context_lens, block_table):
        return _launcher("indexer_logits_paged")(q_fp8, buf, weights, context_lens, block_table,
                                                 arch=detect(q_fp8.device).arch)

    def topk_indices(self, logits, starts, ends, k):
        return _launcher("topk_indices")(logits, starts, ends, k, arch=detect(logits.device).arch)

    def indexer_topk(self, q_fp8, k_fp8, k_scale, weights, ks, ke, k):
        return _launcher("indexer_topk")(q_fp8, k_fp8, k_scale, weights, ks, ke, k, arch=detect(q_fp8.device).arch)

    def indexer_topk_paged(self, q_fp8, buf, weights, context_lens, block_table, k, return_slots):
        return _launcher("indexer_topk_paged")(q_fp8, buf, weights, context_lens, block_table, k, return_slots,
                                               arch=detect(q_fp8.device).arch)

    def sparse_mla_prefill(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        return _launcher("sparse_mla_prefill")(q, buf, indices, sm_scale, d_v, fp8_dtype, arch=detect(q.device).arch)

    def sparse_mla_decode(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        return _launcher("sparse_mla_decode")(q, buf, indices, sm_scale, d_v, fp8_dtype, arch=detect(q.device).arch)

    def store_indexer_k(self, k, buf, slot_mapping, fp8_dtype, scale_fmt):
        return _launcher("store_indexer_k")(k, buf, slot_mapping, fp8_dtype, scale_fmt, arch=detect(k.device).arch)

    def store_mla_kv(self, c_kv, k_rope, buf, slot_mapping, fp8_dtype):
        return _launcher("store_mla_kv")(c_kv, k_rope, buf, slot_mapping, fp8_dtype, arch=detect(c_kv.device).arch)


PROVIDER = TritonProvider()
