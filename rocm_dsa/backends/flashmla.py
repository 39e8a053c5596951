"""FlashMLA provider (NVIDIA): DeepSeek's sparse MLA kernels through the ``flash_mla`` package.

Tested with SGLang's build, the ``sgl-flash-mla`` 1.0.0 wheel (``pip install --no-deps
sgl-flash-mla``; one wheel for every CPython >= 3.10). Its current kernels serve DeepSeek-V4.1
only; the DeepSeek-V3.2 shapes (576-dim q/k, the 656-byte FP8 record) and every SM90 kernel
live in its "legacy" extension, so every call here passes ``use_legacy=True``.

Ops and how they map:

* ``sparse_mla_prefill`` (bf16 latent rows) -> ``flash_mla_sparse_fwd(q, kv [N, 1, 576],
  indices [T, 1, topk], sm_scale, d_v=512, use_legacy=True)``; it returns natural-log
  ``max_logits`` and ``lse`` (``return_log2_lse=None``). FP8 latent rows are refused: FlashMLA's
  prefill kernel reads bf16 only.
* ``sparse_mla_decode`` with the FP8 cache (656-byte records, FlashMLA's "V32" format) ->
  ``flash_mla_with_kvcache(q, k_cache [blocks, block, 1, 656], indices=..., is_fp8_kvcache=True,
  softmax_scale=sm_scale, use_legacy=True)``; lse comes back [B, H, s_q] natural-log, as ours.
* ``sparse_mla_decode`` with the bf16 cache: FlashMLA's decode kernel reads only the FP8
  record, so the bf16 case runs the prefill kernel over the flattened cache, one row per
  (request, query token) - the same arithmetic (FlashMLA's sparse decode of bf16 does not exist
  on SM90).

Argument translation (:mod:`rocm_dsa.vendor_args`, tested on the CPU):

* Heads: FlashMLA takes H in {64, 128}. TP-local counts 16 and 32 are zero-padded to 64 and the
  padding dropped from the results: exact, but 4x (H = 16) or 2x (H = 32) the query-side work;
  counts above 128 run in groups of 128.
* Indices: the decode kernel checks only ``== -1`` and has no bound check, so every negative or
  out-of-range slot is rewritten to -1 first; the prefill kernel gets the same normalization.
* Top-k width is padded with -1 to the kernel's tile (64 on SM90, 128 on SM100).
* Softmax scale: FlashMLA defaults to 576^-0.5, wrong for DeepSeek-V3.2 (0.1352338); ours is
  always passed.
* Empty rows: out 0, lse +inf, max_logits -inf (also enforced after the call).
* FP8 records must be OCP e4m3fn (FlashMLA's format); an e4m3fnuz cache raises TypeError.

Semantics: FlashMLA ``flash_mla_interface.py`` and ``tests/ref.py`` (``ref_sparse_attn_fwd``,
``ref_sparse_attn_decode``), which the reference provider implements.
"""

from __future__ import annotations

import functools
import importlib

import torch

from .. import vendor_args as va
from ..cache import mla_cache_rows
from . import Case, Provider

#: head counts FlashMLA's sparse kernels accept
HEAD_SIZES: tuple[int, ...] = (64, 128)
#: top-k tile of the kernels per arch (topk must be a multiple)
TOPK_MULTIPLE: dict[str, int] = {"sm90": 64, "sm100": 128}
#: FP8 record bytes of FlashMLA's DeepSeek-V3.2 ("V32") KV format
V32_RECORD_BYTES = 656


def _module():
    return importlib.import_module("flash_mla")


@functools.lru_cache(maxsize=1)
def _unavailable() -> str | None:
    try:
        fm = _module()
    except ModuleNotFoundError as e:
        return f"flash_mla is not installed ({e}); pip install --no-deps sgl-flash-mla"
    except Exception as e:  # noqa: BLE001 - a broken extension must not break rocm_dsa
        return f"flash_mla failed to import: {va.describe_error(e)}"
    has_legacy = getattr(fm, "has_legacy", None)
    if has_legacy is None:
        return "flash_mla has no has_legacy(): not the sgl-flash-mla 1.x interface this provider calls"
    if not has_legacy():
        why = getattr(importlib.import_module("flash_mla._loader"), "_LEGACY_UNAVAILABLE", None)
        return f"flash_mla's legacy kernels (SM90, DeepSeek-V3.2 formats) are not available: {why}"
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.version.hip is not None:
        return "flash_mla is CUDA-only (this is a ROCm build of PyTorch)"
    return None


def _topk_multiple(device: torch.device) -> int:
    from ..platform import detect

    return TOPK_MULTIPLE.get(detect(device).arch, 128)


@functools.lru_cache(maxsize=16)
def _sched_meta(key: tuple) -> object:
    """One FlashMLA scheduler object per decode configuration (shapes only; no topk_length)."""
    del key
    return _module().get_mla_metadata()[0]


class FlashMLAProvider(Provider):
    name = "flashmla"
    ops = frozenset({"sparse_mla_prefill", "sparse_mla_decode"})
    devices = frozenset({"cuda"})
    archs = frozenset({"sm90", "sm100"})
    description = "FlashMLA sparse MLA (sgl-flash-mla, legacy SM90 kernels; heads padded to 64/128)"

    def unavailable_reason(self) -> str | None:
        return _unavailable()

    def case_reasons(self, case: Case) -> list[str]:
        if case.op == "sparse_mla_prefill" and case.get("kv_format") == "fp8":
            return ["flash_mla_sparse_fwd reads bf16 latent rows only (no FP8 prefill)"]
        return []

    # --- prefill ------------------------------------------------------------------------------
    def _prefill_rows(self, q: torch.Tensor, rows: torch.Tensor, indices: torch.Tensor, sm_scale: float,
                      d_v: int):
        """q [R, H, 576] bf16, rows [N, 576] bf16, indices [R, topk] -> out [R, H, d_v], max_logits, lse [R, H]."""
        fm = _module()
        r, h, d = q.shape
        n = rows.shape[0]
        idx = va.pad_topk(va.normalize_indices(indices, n), _topk_multiple(q.device)).unsqueeze(1).contiguous()
        kv = rows.view(n, 1, d)
        per_call, calls = va.head_plan(h, HEAD_SIZES)
        qp = va.pad_heads(q, per_call * calls, dim=1)
        outs, mls, lses = [], [], []
        for g in range(calls):
            qg = qp[:, g * per_call:(g + 1) * per_call] if calls > 1 else qp
            out, ml, lse = fm.flash_mla_sparse_fwd(qg.contiguous(), kv, idx, sm_scale, d_v=d_v, use_legacy=True)
            outs.append(out)
            mls.append(ml)
            lses.append(lse)
        out = torch.cat(outs, 1) if calls > 1 else outs[0]
        ml = torch.cat(mls, 1) if calls > 1 else mls[0]
        lse = torch.cat(lses, 1) if calls > 1 else lses[0]
        out, ml, lse = va.unpad_heads(out, h, 1), va.unpad_heads(ml, h, 1), va.unpad_heads(lse, h, 1)
        lse, ml = va.normalize_lse(lse.float(), ml.float())
        return va.zero_empty_rows(out, lse), ml, lse

    def sparse_mla_prefill(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        if buf.dtype != torch.bfloat16:
            raise TypeError("flashmla: sparse_mla_prefill reads bf16 latent rows only")
        return self._prefill_rows(q, mla_cache_rows(buf), indices[:, 0], sm_scale, d_v)

    # --- decode -------------------------------------------------------------------------------
    def sparse_mla_decode(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        b, s_q, h, d = q.shape
        if buf.dtype == torch.bfloat16:
            out, _, lse = self._prefill_rows(q.reshape(b * s_q, h, d), mla_cache_rows(buf),
                                             indices.reshape(b * s_q, -1), sm_scale, d_v)
            return out.reshape(b, s_q, h, d_v), lse.reshape(b, s_q, h).transpose(1, 2).contiguous()
        if fp8_dtype != torch.float8_e4m3fn:
            raise TypeError(f"fp8_dtype: flashmla reads OCP torch.float8_e4m3fn records, got {fp8_dtype}")
        fm = _module()
        k_cache = va.mla_paged_view(buf).view(torch.float8_e4m3fn)
        num_slots = k_cache.shape[0] * k_cache.shape[1]
        idx = va.pad_topk(va.normalize_indices(indices, num_slots), _topk_multiple(q.device)).contiguous()
        per_call, calls = va.head_plan(h, HEAD_SIZES)
        qp = va.pad_heads(q, per_call * calls, dim=2)
        outs, lses = [], []
        for g in range(calls):
            qg = (qp[:, :, g * per_call:(g + 1) * per_call] if calls > 1 else qp).contiguous()
            key = (b, s_q, per_call, tuple(k_cache.shape), idx.shape[-1], q.device.index, g)
            out, lse = fm.flash_mla_with_kvcache(
                qg, k_cache, None, None, head_dim_v=d_v, tile_scheduler_metadata=_sched_meta(key),
                softmax_scale=sm_scale, is_fp8_kvcache=True, indices=idx, use_legacy=True)
            outs.append(out)
            lses.append(lse)
        out = torch.cat(outs, 2) if calls > 1 else outs[0]
        lse = torch.cat(lses, 1) if calls > 1 else lses[0]
        out, lse = va.unpad_heads(out, h, 2), va.unpad_heads(lse.float(), h, 1)
        lse, _ = va.normalize_lse(lse)
        out = va.zero_empty_rows(out, lse.transpose(1, 2))
        return out, lse.contiguous()


PROVIDER = FlashMLAProvider()
