"""DeepGEMM provider (NVIDIA): the lightning-indexer logits kernels of the ``deep_gemm`` package.

Written against SGLang's build, the ``sgl-deep-gemm`` 0.2.5 wheel (``pip install --no-deps
sgl-deep-gemm``): a TORCH_LIBRARY extension built against one PyTorch version (a different
torch makes the import fail, and that failure is this provider's reason), whose kernels are
compiled at first use with the machine's nvcc (CUDA >= 12.9).

Ops and how they map (interface of DeepGEMM ``tests/test_attention.py`` at that version):

* ``indexer_logits`` -> ``fp8_fp4_mqa_logits((q, None), (k, k_scale), weights, ks, ke,
  max_seqlen_k=N)``. This version always returns window-relative ("compressed") logits
  [T, max_seqlen_k] (column j = key ks[t] + j, garbage past ke - ks); they are expanded to the
  contract's [T, N] with -inf outside the window (:func:`rocm_dsa.vendor_args.expand_compressed_logits`,
  one extra pass over [T, N]).
* ``indexer_logits_paged`` -> ``fp8_fp4_paged_mqa_logits((q, None), cache [P, page, 1, 132],
  weights, context_lens [B, next_n], block_table, schedule, max_context_len)`` with
  ``get_paged_mqa_logits_metadata``. The cache is our buffer as a view (same bytes). DeepGEMM
  takes one visible length per query token; ours follow from context_lens and the MTP rule
  (:func:`rocm_dsa.vendor_args.paged_row_lengths`). Columns past each row's length are not
  written by the kernel and are set to -inf after it. next_n outside {1, 2, 4} (what the SM90
  kernel takes) runs as B*next_n single-token rows (keys re-read per token).

Constraints (checked in :meth:`DeepGEMMProvider.case_reasons`): OCP e4m3fn operands; head dim
32/64/128; heads {32, 64} on SM90 ({8, 12, 16, 20, 32, 64} on SM100); page size 64 (SM90 also
32).
"""

from __future__ import annotations

import functools
import importlib

import torch

from .. import vendor_args as va
from ..platform import detect
from . import Case, Provider

#: head counts of the indexer kernels per arch
HEADS: dict[str, frozenset[int]] = {
    "sm90": frozenset({32, 64}),
    "sm100": frozenset({8, 12, 16, 20, 32, 64}),
}
HEAD_DIMS = frozenset({32, 64, 128})
PAGE_SIZES: dict[str, frozenset[int]] = {"sm90": frozenset({32, 64}), "sm100": frozenset({32, 64, 128})}
#: MTP widths the paged kernel takes directly; others run as single-token rows
NEXT_N: dict[str, frozenset[int]] = {"sm90": frozenset({1, 2, 4}), "sm100": frozenset({1, 2})}
_API = ("fp8_fp4_mqa_logits", "fp8_fp4_paged_mqa_logits", "get_paged_mqa_logits_metadata", "get_num_sms")


def _module():
    return importlib.import_module("deep_gemm")


@functools.lru_cache(maxsize=1)
def _unavailable() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device"
    if torch.version.hip is not None:
        return "deep_gemm is CUDA-only (this is a ROCm build of PyTorch)"
    try:
        dg = _module()
    except ModuleNotFoundError as e:
        return f"deep_gemm is not installed ({e}); pip install --no-deps sgl-deep-gemm"
    except Exception as e:  # noqa: BLE001 - e.g. an extension built for another torch
        return f"deep_gemm failed to import: {va.describe_error(e)}"
    missing = [n for n in _API if not hasattr(dg, n)]
    if missing:
        return f"deep_gemm lacks {missing}: not the sgl-deep-gemm 0.2.x interface this provider calls"
    return None


class DeepGEMMProvider(Provider):
    name = "deepgemm"
    ops = frozenset({"indexer_logits", "indexer_logits_paged"})
    devices = frozenset({"cuda"})
    archs = frozenset(HEADS)
    description = "DeepGEMM FP8 MQA logits (sgl-deep-gemm; JIT-compiled with nvcc)"

    def unavailable_reason(self) -> str | None:
        return _unavailable()

    def case_reasons(self, case: Case) -> list[str]:
        reasons = []
        dt = case.dtype("q_fp8")
        if dt is not None and dt != torch.float8_e4m3fn:
            reasons.append(f"takes OCP torch.float8_e4m3fn operands, not {dt}")
        heads = HEADS.get(case.arch, frozenset())
        if case.heads is not None and case.heads not in heads:
            reasons.append(f"supports indexer heads {sorted(heads)} on {case.arch}, not {case.heads}")
        d = case.get("head_dim", 128)
        if d not in HEAD_DIMS:
            reasons.append(f"supports head_dim {sorted(HEAD_DIMS)}, not {d}")
        if case.op == "indexer_logits_paged":
            ps = case.get("page_size")
            sizes = PAGE_SIZES.get(case.arch, frozenset())
            if ps is not None and ps not in sizes:
                reasons.append(f"supports page sizes {sorted(sizes)} on {case.arch}, not {ps}")
        return reasons

    def indexer_logits(self, q_fp8, k_fp8, k_scale, weights, ks, ke):
        dg = _module()
        t, n = q_fp8.shape[0], k_fp8.shape[0]
        if t == 0 or n == 0:
            return torch.full((t, n), float("-inf"), dtype=torch.float32, device=q_fp8.device)
        ks_c = ks.clamp(0, n).contiguous()
        ke_c = torch.maximum(ke.clamp(0, n), ks_c).contiguous()
        comp = dg.fp8_fp4_mqa_logits((q_fp8, None), (k_fp8, k_scale), weights, ks_c, ke_c, n)
        return va.expand_compressed_logits(comp, ks_c, ke_c, n)

    def indexer_logits_paged(self, q_fp8, buf, weights, context_lens, block_table):
        dg = _module()
        b, next_n, h, d = q_fp8.shape
        cache = va.deepgemm_indexer_cache(buf, d)
        page = cache.shape[1]
        width = block_table.shape[1] * page
        arch = detect(q_fp8.device).arch
        lens = va.paged_row_lengths(context_lens, next_n, width)  # [B*next_n]
        table = block_table.contiguous()
        q = q_fp8
        if next_n not in NEXT_N.get(arch, frozenset({1})):
            q = q_fp8.reshape(b * next_n, 1, h, d)
            table = table.repeat_interleave(next_n, dim=0)
            b, next_n = b * next_n, 1
        lens2d = lens.view(b, next_n).contiguous()
        sms = dg.get_num_sms() // (2 if arch == "sm90" and next_n == 4 else 1)
        sched = dg.get_paged_mqa_logits_metadata(lens2d, page, sms)
        logits = dg.fp8_fp4_paged_mqa_logits((q, None), cache, weights, lens2d, table, sched, width)
        return va.mask_columns(logits.float(), None, lens)


PROVIDER = DeepGEMMProvider()
