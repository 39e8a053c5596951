"""aiter provider (ROCm): AMD's kernels for the DSA ops, from the ``amd-aiter`` package.

``import aiter`` needs a ROCm machine (it loads HIP modules and probes the GPU at import), so on
any other machine this provider reports why it is unavailable and ``import rocm_dsa`` is
unaffected. The calls below are exercised by ``rocm-dsa check`` on ROCm machines; every
argument translation they rely on is a pure function of :mod:`rocm_dsa.vendor_args` with CPU
tests against the reference provider.

Ops and how they map (signatures of amd-aiter 0.1.7):

* ``indexer_logits`` -> ``aiter.ops.triton.fp8_mqa_logits.fp8_mqa_logits(Q, KV, kv_scales,
  weights, cu_starts, cu_ends)``. Window starts are aligned down to its 128-key tile and the
  result re-masked to [ks, ke) (:func:`~rocm_dsa.vendor_args.aligned_starts`: its tile walk
  misaddresses unaligned starts). On gfx942, OCP operands are turned into e4m3fnuz with
  doubled scales (:func:`~rocm_dsa.vendor_args.fnuz_indexer_operands`) so the MFMA FP8 path is
  used; logits are unchanged.
* ``indexer_logits_paged`` -> ``aiter.ops.triton.pa_mqa_logits.deepgemm_fp8_paged_mqa_logits``
  at page size 1: the visible keys are gathered into aiter's per-token records (132 B each,
  one extra read of those keys) and every query token runs as its own row
  (:func:`~rocm_dsa.vendor_args.aiter_paged_indexer_inputs`); -inf past each row's length.
* ``topk_indices`` / ``indexer_topk`` / ``indexer_topk_paged`` -> ``aiter.top_k_per_row_prefill``
  (k = 2048 fixed in the kernel; k < 2048 takes the best k of its 2048) on logits masked to
  the window, with windows passed as [0, end) so that its short-row and radix paths agree on
  absolute columns; results are reordered, -inf/NaN dropped and -1 padded by
  :func:`~rocm_dsa.vendor_args.finish_topk`. Ties at the k-th value may pick other columns
  than the contract's lower-index rule.
* ``sparse_mla_decode`` / ``sparse_mla_prefill`` (bf16 latent rows) -> aiter's MLA decode
  assembly kernel (``aiter.mla_decode_stage1_asm_fwd``, what ``aiter.mla.mla_decode_fwd``
  launches) at page size 1 with one split, each query row a "request" whose KV index list is
  its valid top-k entries (:func:`~rocm_dsa.vendor_args.compact_indices`); heads padded to 16
  or 128. One split keeps the kernel's natural-log LSE final (``mla_decode_fwd`` itself returns
  no LSE in this mode). Prefill's max_logits come from a chunked PyTorch pass (an extra QK).
  FP8 656-byte records are refused: aiter's MLA kernels take per-tensor-scaled FP8 only.
"""

from __future__ import annotations

import functools
import importlib

import torch

from .. import vendor_args as va
from ..cache import mla_cache_rows, positions_to_slots
from ..fp8 import ocp_to_fnuz
from ..platform import detect
from . import Case, Provider

#: top-k width fixed in aiter's top_k_per_row kernels
AITER_TOPK = 2048
#: key tile of aiter's ragged fp8_mqa_logits kernel
LOGITS_BLOCK_KV = 128
#: head counts of aiter's MLA decode kernel (non-persistent mode)
MLA_HEAD_SIZES: tuple[int, ...] = (16, 128)
_INDEXER_OPS = frozenset({"indexer_logits", "indexer_logits_paged", "indexer_topk", "indexer_topk_paged"})
_TOPK_OPS = frozenset({"topk_indices", "indexer_topk", "indexer_topk_paged"})
_MLA_BUDGET = 1 << 26  # fp32 elements of the max_logits pass per chunk


def _module():
    return importlib.import_module("aiter")


@functools.lru_cache(maxsize=1)
def _unavailable() -> str | None:
    if torch.version.hip is None:
        return "aiter needs a ROCm build of PyTorch (this one is not)"
    if not torch.cuda.is_available():
        return "no ROCm GPU visible"
    try:
        _module()
        importlib.import_module("aiter.ops.triton.fp8_mqa_logits")
        importlib.import_module("aiter.ops.triton.pa_mqa_logits")
    except ModuleNotFoundError as e:
        return f"aiter is not installed ({e}); pip install amd-aiter"
    except Exception as e:  # noqa: BLE001 - a broken vendor install must not break rocm_dsa
        return f"aiter failed to import: {va.describe_error(e)}"
    return None


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def _native_operands(q_fp8, k_fp8, k_scale, weights):
    if detect(q_fp8.device).arch == "gfx942":
        return va.fnuz_indexer_operands(q_fp8, k_fp8, k_scale, weights)
    return q_fp8, k_fp8, k_scale, weights


class AiterProvider(Provider):
    name = "aiter"
    ops = frozenset({"indexer_logits", "indexer_logits_paged", "topk_indices", "indexer_topk",
                     "indexer_topk_paged", "sparse_mla_prefill", "sparse_mla_decode"})
    devices = frozenset({"cuda"})
    archs = frozenset({"gfx942", "gfx950"})
    description = "AMD aiter kernels (Triton indexer logits, HIP top-k, MLA decode assembly)"

    def unavailable_reason(self) -> str | None:
        return _unavailable()

    def case_reasons(self, case: Case) -> list[str]:
        reasons = []
        if case.op in _INDEXER_OPS:
            if case.heads is not None and not _pow2(case.heads):
                reasons.append(f"indexer kernels need a power-of-two head count, not {case.heads}")
            d = case.get("head_dim", 128)
            if not _pow2(d):
                reasons.append(f"indexer kernels need a power-of-two head_dim, not {d}")
        if case.op in _TOPK_OPS and case.get("k", AITER_TOPK) > AITER_TOPK:
            reasons.append(f"top_k_per_row is fixed at k={AITER_TOPK}, not {case.get('k')}")
        if case.op in ("sparse_mla_prefill", "sparse_mla_decode") and case.get("kv_format") == "fp8":
            reasons.append("aiter's MLA kernels take per-tensor-scaled FP8, not 656-byte tile-scaled records")
        return reasons

    # --- indexer ------------------------------------------------------------------------------
    def indexer_logits(self, q_fp8, k_fp8, k_scale, weights, ks, ke):
        from aiter.ops.triton.fp8_mqa_logits import fp8_mqa_logits

        n = k_fp8.shape[0]
        q, k, sc, w = _native_operands(q_fp8, k_fp8, k_scale, weights)
        ks_c = ks.clamp(0, n)
        ke_c = torch.maximum(ke.clamp(0, n), ks_c)
        logits = fp8_mqa_logits(q, k, sc, w, va.aligned_starts(ks_c, LOGITS_BLOCK_KV), ke_c.to(torch.int32))
        return va.mask_columns(logits, ks_c, ke_c)

    def indexer_logits_paged(self, q_fp8, buf, weights, context_lens, block_table):
        from aiter.ops.triton.pa_mqa_logits import deepgemm_fp8_paged_mqa_logits

        b, next_n, h, d = q_fp8.shape
        q, w = q_fp8, weights
        if detect(q_fp8.device).arch == "gfx942" and q_fp8.dtype == torch.float8_e4m3fn:
            buf = va.fnuz_indexer_cache(buf, d)
            q, w = ocp_to_fnuz(q_fp8)[0], weights * 2  # keys: scales doubled in the cache copy
        records, kv_indices, lens, width = va.aiter_paged_indexer_inputs(buf, context_lens, block_table, next_n, d)
        rows = b * next_n
        out = torch.full((rows, va.round_up(max(width, 1), 64)), float("-inf"), dtype=torch.float32,
                         device=q.device)
        deepgemm_fp8_paged_mqa_logits(q.reshape(rows, 1, h, d), records, w, out, lens, kv_indices, width)
        return va.mask_columns(out[:, :width], None, lens)

    # --- top-k --------------------------------------------------------------------------------
    def _topk_cols(self, logits: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """aiter top-k of each row over columns [0, ends[r]) -> [R, 2048] absolute columns."""
        r = logits.shape[0]
        idx = torch.full((r, AITER_TOPK), -1, dtype=torch.int32, device=logits.device)
        starts = torch.zeros(r, dtype=torch.int32, device=logits.device)
        _module().top_k_per_row_prefill(logits, starts, ends.to(torch.int32).contiguous(), idx, None, r,
                                        logits.stride(0), logits.stride(1))
        return idx

    def topk_indices(self, logits, starts, ends, k):
        c = logits.shape[1]
        lo, hi = starts.clamp(0, c), ends.clamp(0, c)
        masked = va.mask_columns(logits, lo, hi, nan_to_neginf=True)
        return va.finish_topk(self._topk_cols(masked, hi), masked, starts, k, hi)

    def indexer_topk(self, q_fp8, k_fp8, k_scale, weights, ks, ke, k):
        n = k_fp8.shape[0]
        logits = self.indexer_logits(q_fp8, k_fp8, k_scale, weights, ks, ke)
        hi = torch.maximum(ke.clamp(0, n), ks.clamp(0, n))
        return va.finish_topk(self._topk_cols(logits, hi), logits, ks, k, hi)

    def indexer_topk_paged(self, q_fp8, buf, weights, context_lens, block_table, k, return_slots):
        b, next_n = q_fp8.shape[:2]
        page = buf.shape[1] // (q_fp8.shape[-1] + 4)
        logits = self.indexer_logits_paged(q_fp8, buf, weights, context_lens, block_table)
        lens = va.paged_row_lengths(context_lens, next_n, logits.shape[1])
        pos = va.finish_topk(self._topk_cols(logits, lens), logits, None, k, lens)
        if return_slots:
            return positions_to_slots(pos, block_table.repeat_interleave(next_n, dim=0), page)
        return pos

    # --- sparse MLA ---------------------------------------------------------------------------
    def _mla_rows(self, q, rows, indices, sm_scale, d_v):
        """q [R, H, 576] bf16, rows [N, 576] bf16, indices [R, topk] -> out [R, H, d_v] bf16, lse [R, H]."""
        aiter = _module()
        r, h, d = q.shape
        n = rows.shape[0]
        kv = rows.view(n, 1, 1, d)
        kv_indices, kv_indptr, _ = va.compact_indices(indices, n)
        qo_indptr = torch.arange(r + 1, dtype=torch.int32, device=q.device)
        last_page = torch.ones(r, dtype=torch.int32, device=q.device)
        splits = torch.arange(r + 1, dtype=torch.int32, device=q.device)  # one KV split per row
        per_call, calls = va.head_plan(h, MLA_HEAD_SIZES)
        qp = va.pad_heads(q, per_call * calls, dim=1)
        outs, lses = [], []
        for g in range(calls):
            qg = qp[:, g * per_call:(g + 1) * per_call].contiguous()
            part = torch.empty(r, 1, per_call, d_v, dtype=torch.float32, device=q.device)
            part_lse = torch.empty(r, 1, per_call, 1, dtype=torch.float32, device=q.device)
            o = torch.empty(r, per_call, d_v, dtype=torch.bfloat16, device=q.device)
            aiter.mla_decode_stage1_asm_fwd(qg, kv, qo_indptr, kv_indptr, kv_indices, last_page, splits,
                                            None, None, None, 1, sm_scale, part, part_lse, o, None, None)
            outs.append(part[:, 0])
            lses.append(part_lse[:, 0, :, 0])
        out = torch.cat(outs, 1) if calls > 1 else outs[0]
        lse = torch.cat(lses, 1) if calls > 1 else lses[0]
        lse, _ = va.normalize_lse(va.unpad_heads(lse, h, 1))
        out = va.zero_empty_rows(va.unpad_heads(out, h, 1), lse)
        return out.to(torch.bfloat16), lse

    @staticmethod
    def _max_logits(q, rows, indices, sm_scale):
        r, h, _ = q.shape
        n, topk = rows.shape[0], indices.shape[1]
        out = torch.empty(r, h, dtype=torch.float32, device=q.device)
        step = max(1, _MLA_BUDGET // max(1, topk * max(h, rows.shape[1])))
        for r0 in range(0, r, step):
            r1 = min(r, r0 + step)
            idx = indices[r0:r1].long()
            valid = (idx >= 0) & (idx < n)
            kv = rows[torch.where(valid, idx, torch.zeros_like(idx))].float()
            s = torch.einsum("rhd,rkd->rhk", q[r0:r1].float(), kv) * sm_scale
            out[r0:r1] = torch.where(valid.unsqueeze(1), s, torch.full_like(s, float("-inf"))).amax(-1)
        return out

    def sparse_mla_prefill(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        rows = mla_cache_rows(buf)
        if rows.dtype != torch.bfloat16:
            raise TypeError("aiter: sparse MLA reads bf16 latent rows only")
        idx = indices[:, 0]
        out, lse = self._mla_rows(q, rows, idx, sm_scale, d_v)
        ml = self._max_logits(q, rows, idx, sm_scale)
        return out, torch.where(torch.isposinf(lse), torch.full_like(ml, float("-inf")), ml), lse

    def sparse_mla_decode(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        rows = mla_cache_rows(buf)
        if rows.dtype != torch.bfloat16:
            raise TypeError("aiter: sparse MLA reads bf16 latent rows only")
        b, s_q, h, d = q.shape
        out, lse = self._mla_rows(q.reshape(b * s_q, h, d), rows, indices.reshape(b * s_q, -1), sm_scale, d_v)
        return out.reshape(b, s_q, h, d_v), lse.reshape(b, s_q, h).transpose(1, 2).contiguous()


PROVIDER = AiterProvider()
