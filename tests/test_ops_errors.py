"""Bad input to every public op raises a clear TypeError/ValueError naming the argument.

Each op has one small valid call (checked to run); every case below changes one argument and
expects the named error. Device mismatches use the 'meta' device (no computation runs there).
"""

from __future__ import annotations

import inspect

import pytest
import torch

import rocm_dsa
import rocm_dsa.ops as ops
from rocm_dsa.cache import IndexerKCache, MLAKVCache

FN, FNUZ = torch.float8_e4m3fn, torch.float8_e4m3fnuz
I32, I64 = torch.int32, torch.int64
T, H, N, B, NEXT_N, TOPK = 4, 8, 10, 2, 2, 8


def _fp8(*shape, dtype=FN):
    return torch.randn(*shape).to(dtype)


def _valid(op: str) -> dict:
    """Keyword arguments of one valid small call of ``op``."""
    if op in ("indexer_logits", "indexer_topk"):
        kw = dict(q_fp8=_fp8(T, H, 128), k_fp8=_fp8(N, 128), k_scale=torch.rand(N), weights=torch.randn(T, H),
                  ks=torch.zeros(T, dtype=I32), ke=torch.arange(1, T + 1, dtype=I32) * 2)
        if op == "indexer_topk":
            kw["k"] = TOPK
        return kw
    if op in ("indexer_logits_paged", "indexer_topk_paged"):
        cache = IndexerKCache(3, page_size=4, fp8_dtype=FN)
        cache.store(torch.randn(12, 128), torch.arange(12), provider="reference")
        kw = dict(q_fp8=_fp8(B, NEXT_N, H, 128), kv_cache=cache.buffer, weights=torch.randn(B * NEXT_N, H),
                  context_lens=torch.tensor([5, 7], dtype=I32), block_table=torch.tensor([[2, 0], [1, 2]], dtype=I32))
        if op == "indexer_topk_paged":
            kw["k"] = TOPK
        return kw
    if op == "topk_indices":
        return dict(logits=torch.randn(T, 20), starts=torch.zeros(T, dtype=I32),
                    ends=torch.full((T,), 20, dtype=I32), k=TOPK)
    if op == "sparse_mla_prefill":
        return dict(q=torch.randn(T, H, 576, dtype=torch.bfloat16), kv=torch.randn(N, 1, 576, dtype=torch.bfloat16),
                    indices=torch.randint(0, N, (T, 1, TOPK), dtype=I32), sm_scale=0.1352338)
    if op == "sparse_mla_decode":
        return dict(q=torch.randn(B, 2, H, 576, dtype=torch.bfloat16),
                    kv_cache=torch.randn(3, 4, 1, 576, dtype=torch.bfloat16),
                    indices=torch.randint(0, 12, (B, 2, TOPK), dtype=I32), sm_scale=0.1352338)
    if op == "store_indexer_k":
        return dict(k=torch.randn(5, 128), kv_cache=torch.zeros(2, 4 * 132, dtype=torch.uint8),
                    slot_mapping=torch.tensor([0, 3, -1, 7, 5]), fp8_dtype=FN)
    if op == "store_mla_kv":
        return dict(c_kv=torch.randn(5, 512), k_rope=torch.randn(5, 64),
                    kv_cache=torch.zeros(2, 4, 1, 576, dtype=torch.bfloat16), slot_mapping=torch.tensor([0, 3, -1, 7, 5]))
    raise AssertionError(op)


def _call(op: str, kw: dict):
    return getattr(ops, op)(**kw, provider="reference")


def _noncontig(t: torch.Tensor) -> torch.Tensor:
    """Same shape and dtype, not contiguous (every other element of a wider tensor)."""
    wide = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype)
    v = wide[..., ::2]
    v.copy_(t) if t.dtype not in (FN, FNUZ) else v.view(torch.uint8).copy_(t.view(torch.uint8))
    assert not v.is_contiguous() and v.shape == t.shape
    return v


def _meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


# (op, argument, how to break it, exception, text the message must hold)
CASES = [
    # ---- indexer_logits / indexer_topk (same validation) ---------------------------------
    *[(op, arg, fn, exc, msg) for op in ("indexer_logits", "indexer_topk") for arg, fn, exc, msg in [
        ("q_fp8", lambda a: a.float(), TypeError, "q_fp8: expected torch.float8"),
        ("q_fp8", lambda a: a.to(torch.bfloat16), TypeError, "q_fp8"),
        ("q_fp8", lambda a: a[0], ValueError, "q_fp8: expected shape [T, H, D]"),
        ("q_fp8", _noncontig, ValueError, "q_fp8: expected a contiguous"),
        ("k_fp8", lambda a: a.view(torch.uint8).view(FNUZ), TypeError, "k_fp8: expected dtype torch.float8_e4m3fn"),
        ("k_fp8", lambda a: _fp8(N, 64), ValueError, "k_fp8: expected shape [10, 128], got [10, 64]"),
        ("k_fp8", _meta, ValueError, "k_fp8: expected a tensor on cpu"),
        ("k_fp8", _noncontig, ValueError, "k_fp8: expected a contiguous"),
        ("k_scale", lambda a: a.double(), TypeError, "k_scale: expected dtype torch.float32"),
        ("k_scale", lambda a: a[:-1], ValueError, f"k_scale: expected shape [{N}]"),
        ("k_scale", _meta, ValueError, "k_scale: expected a tensor on cpu"),
        ("weights", lambda a: a.to(torch.bfloat16), TypeError, "weights: expected dtype torch.float32"),
        ("weights", lambda a: a[:, :-1].contiguous(), ValueError, f"weights: expected shape [{T}, {H}]"),
        ("weights", _noncontig, ValueError, "weights: expected a contiguous"),
        ("weights", _meta, ValueError, "weights: expected a tensor on cpu"),
        ("ks", lambda a: a.long(), TypeError, "ks: expected dtype torch.int32, got torch.int64"),
        ("ks", lambda a: a[:-1], ValueError, f"ks: expected shape [{T}]"),
        ("ks", _meta, ValueError, "ks: expected a tensor on cpu"),
        ("ke", lambda a: a.long(), TypeError, "ke: expected dtype torch.int32"),
        ("ke", lambda a: a.float(), TypeError, "ke: expected dtype torch.int32"),
        ("ke", _noncontig, ValueError, "ke: expected a contiguous"),
    ]],
    ("indexer_topk", "k", lambda a: 0, ValueError, "k: expected >= 1"),
    ("indexer_topk", "k", lambda a: 20000, ValueError, "k: expected <= 16384"),
    ("indexer_topk", "k", lambda a: 8.0, TypeError, "k: expected an int"),
    # ---- paged indexer ----------------------------------------------------------------------
    *[(op, arg, fn, exc, msg) for op in ("indexer_logits_paged", "indexer_topk_paged") for arg, fn, exc, msg in [
        ("q_fp8", lambda a: a.to(torch.bfloat16), TypeError, "q_fp8: expected torch.float8"),
        ("q_fp8", lambda a: a[0], ValueError, "q_fp8: expected shape [B, next_n, H, 128]"),
        ("q_fp8", lambda a: _fp8(B, NEXT_N, H, 64), ValueError, "q_fp8: expected shape"),
        ("q_fp8", _noncontig, ValueError, "q_fp8: expected a contiguous"),
        ("kv_cache", lambda a: a.view(torch.int8), TypeError, "kv_cache: expected dtype torch.uint8"),
        ("kv_cache", lambda a: a[:, :-4].contiguous(), ValueError, "kv_cache: expected uint8 [num_pages, page_size*132]"),
        ("kv_cache", lambda a: a.view(-1), ValueError, "kv_cache: expected shape"),
        ("kv_cache", _meta, ValueError, "kv_cache: expected a tensor on cpu"),
        ("kv_cache", _noncontig, ValueError, "kv_cache: expected a contiguous"),
        ("kv_cache", lambda a: IndexerKCache(3, page_size=4, fp8_dtype=FNUZ), TypeError, "kv_cache: holds"),
        ("weights", lambda a: a[: B], ValueError, f"weights: expected shape [{B * NEXT_N}, {H}]"),
        ("weights", lambda a: a.double(), TypeError, "weights: expected dtype torch.float32"),
        ("weights", _meta, ValueError, "weights: expected a tensor on cpu"),
        ("context_lens", lambda a: a.long(), TypeError, "context_lens: expected dtype torch.int32, got torch.int64"),
        ("context_lens", lambda a: a[:1], ValueError, f"context_lens: expected shape [{B}]"),
        ("context_lens", _meta, ValueError, "context_lens: expected a tensor on cpu"),
        ("block_table", lambda a: a.long(), TypeError, "block_table: expected dtype torch.int32, got torch.int64"),
        ("block_table", lambda a: a[0], ValueError, "block_table: expected shape"),
        ("block_table", lambda a: a[:1], ValueError, f"block_table: expected shape [{B}, *]"),
        ("block_table", _meta, ValueError, "block_table: expected a tensor on cpu"),
    ]],
    ("indexer_topk_paged", "k", lambda a: -3, ValueError, "k: expected >= 1"),
    ("indexer_topk_paged", "k", lambda a: True, TypeError, "k: expected an int"),
    # ---- top-k ------------------------------------------------------------------------------
    ("topk_indices", "logits", lambda a: a.to(torch.bfloat16), TypeError, "logits: expected dtype torch.float32"),
    ("topk_indices", "logits", lambda a: a[0], ValueError, "logits: expected shape [R, C]"),
    ("topk_indices", "logits", _noncontig, ValueError, "logits: expected a contiguous"),
    ("topk_indices", "starts", lambda a: a.long(), TypeError, "starts: expected dtype torch.int32, got torch.int64"),
    ("topk_indices", "starts", lambda a: a[:-1], ValueError, f"starts: expected shape [{T}]"),
    ("topk_indices", "starts", _meta, ValueError, "starts: expected a tensor on cpu"),
    ("topk_indices", "ends", lambda a: a.long(), TypeError, "ends: expected dtype torch.int32"),
    ("topk_indices", "ends", lambda a: a.view(T, 1), ValueError, "ends: expected shape"),
    ("topk_indices", "ends", _noncontig, ValueError, "ends: expected a contiguous"),
    ("topk_indices", "k", lambda a: 0, ValueError, "k: expected >= 1"),
    ("topk_indices", "k", lambda a: "2048", TypeError, "k: expected an int"),
    # ---- sparse MLA prefill -----------------------------------------------------------------
    ("sparse_mla_prefill", "q", lambda a: a.float(), TypeError, "q: expected dtype torch.bfloat16"),
    ("sparse_mla_prefill", "q", lambda a: a[..., :512].contiguous(), ValueError, "q: expected shape [4, 8, 576], got [4, 8, 512]"),
    ("sparse_mla_prefill", "q", _noncontig, ValueError, "q: expected a contiguous"),
    ("sparse_mla_prefill", "kv", lambda a: a.float(), TypeError, "kv_cache: expected dtype torch.bfloat16 or torch.uint8"),
    ("sparse_mla_prefill", "kv", lambda a: a[..., :512].contiguous(), ValueError, "kv_cache: expected"),
    ("sparse_mla_prefill", "kv", lambda a: torch.zeros(N, 1, 576, dtype=torch.uint8), ValueError, "656"),
    ("sparse_mla_prefill", "kv", lambda a: a.view(N, 576, 1), ValueError, "kv_cache: expected"),
    ("sparse_mla_prefill", "kv", _meta, ValueError, "kv_cache: expected a tensor on cpu"),
    ("sparse_mla_prefill", "kv", _noncontig, ValueError, "kv_cache: expected a contiguous"),
    ("sparse_mla_prefill", "kv", lambda a: MLAKVCache(2, kv_dtype="fp8", fp8_dtype=FN), None, None),  # valid
    ("sparse_mla_prefill", "indices", lambda a: a.long(), TypeError, "indices: expected dtype torch.int32, got torch.int64"),
    ("sparse_mla_prefill", "indices", lambda a: a.view(T, TOPK), ValueError, f"indices: expected shape [{T}, 1, *]"),
    ("sparse_mla_prefill", "indices", lambda a: a[:-1], ValueError, "indices: expected shape"),
    ("sparse_mla_prefill", "indices", lambda a: a[..., :0].contiguous(), ValueError, "indices: expected at least one"),
    ("sparse_mla_prefill", "indices", _meta, ValueError, "indices: expected a tensor on cpu"),
    ("sparse_mla_prefill", "indices", _noncontig, ValueError, "indices: expected a contiguous"),
    ("sparse_mla_prefill", "sm_scale", lambda a: 0.0, ValueError, "sm_scale: expected a finite value > 0"),
    ("sparse_mla_prefill", "sm_scale", lambda a: -0.1, ValueError, "sm_scale"),
    ("sparse_mla_prefill", "sm_scale", lambda a: float("nan"), ValueError, "sm_scale"),
    ("sparse_mla_prefill", "sm_scale", lambda a: float("inf"), ValueError, "sm_scale"),
    ("sparse_mla_prefill", "sm_scale", lambda a: None, TypeError, "sm_scale: expected a float"),
    ("sparse_mla_prefill", "sm_scale", lambda a: torch.tensor(0.1), TypeError, "sm_scale: expected a float"),
    ("sparse_mla_prefill", "d_v", lambda a: 256, ValueError, "d_v: expected 512"),
    ("sparse_mla_prefill", "fp8_dtype", lambda a: torch.bfloat16, TypeError, "fp8_dtype"),
    # ---- sparse MLA decode ------------------------------------------------------------------
    ("sparse_mla_decode", "q", lambda a: a.half(), TypeError, "q: expected dtype torch.bfloat16"),
    ("sparse_mla_decode", "q", lambda a: a[0], ValueError, "q: expected shape [B, s_q, H, 576]"),
    ("sparse_mla_decode", "q", _noncontig, ValueError, "q: expected a contiguous"),
    ("sparse_mla_decode", "kv_cache", lambda a: a.view(3, 4, 576, 1), ValueError, "kv_cache: expected"),
    ("sparse_mla_decode", "kv_cache", lambda a: a.view(3, 2, 2, 576), ValueError, "kv_cache: expected"),
    ("sparse_mla_decode", "kv_cache", lambda a: torch.zeros(3, 4, 1, 576, dtype=torch.uint8), ValueError, "656"),
    ("sparse_mla_decode", "kv_cache", _meta, ValueError, "kv_cache: expected a tensor on cpu"),
    ("sparse_mla_decode", "indices", lambda a: a.long(), TypeError, "indices: expected dtype torch.int32, got torch.int64"),
    ("sparse_mla_decode", "indices", lambda a: a[:, :1].contiguous(), ValueError, "indices: expected shape [2, 2, *]"),
    ("sparse_mla_decode", "indices", lambda a: a[..., :0].contiguous(), ValueError, "indices: expected at least one"),
    ("sparse_mla_decode", "indices", _meta, ValueError, "indices: expected a tensor on cpu"),
    ("sparse_mla_decode", "indices", _noncontig, ValueError, "indices: expected a contiguous"),
    ("sparse_mla_decode", "sm_scale", lambda a: 0, ValueError, "sm_scale"),
    ("sparse_mla_decode", "sm_scale", lambda a: "0.1", TypeError, "sm_scale"),
    ("sparse_mla_decode", "d_v", lambda a: 128, ValueError, "d_v: expected 512"),
    # ---- cache writes -----------------------------------------------------------------------
    ("store_indexer_k", "k", lambda a: a.to(FN), TypeError, "k: expected dtype"),
    ("store_indexer_k", "k", lambda a: a.double(), TypeError, "k: expected dtype"),
    ("store_indexer_k", "k", lambda a: a[:, :64].contiguous(), ValueError, "k: expected shape [*, 128]"),
    ("store_indexer_k", "k", _noncontig, ValueError, "k: expected a contiguous"),
    ("store_indexer_k", "kv_cache", lambda a: a.view(torch.int8), TypeError, "kv_cache: expected dtype torch.uint8"),
    ("store_indexer_k", "kv_cache", lambda a: a[:, :100].contiguous(), ValueError, "kv_cache"),
    ("store_indexer_k", "kv_cache", _meta, ValueError, "kv_cache: expected a tensor on cpu"),
    ("store_indexer_k", "kv_cache", lambda a: IndexerKCache(2, page_size=4, fp8_dtype=FNUZ), TypeError,
     "fp8_dtype: the kv cache holds torch.float8_e4m3fnuz"),
    ("store_indexer_k", "slot_mapping", lambda a: a.float(), TypeError, "slot_mapping: expected dtype torch.int32 or torch.int64"),
    ("store_indexer_k", "slot_mapping", lambda a: a[:-1], ValueError, "slot_mapping: expected shape [5]"),
    ("store_indexer_k", "slot_mapping", _meta, ValueError, "slot_mapping: expected a tensor on cpu"),
    ("store_indexer_k", "slot_mapping", _noncontig, ValueError, "slot_mapping: expected a contiguous"),
    ("store_indexer_k", "fp8_dtype", lambda a: torch.float8_e5m2, TypeError, "fp8_dtype"),
    ("store_indexer_k", "scale_fmt", lambda a: "e8m0", ValueError, "scale_fmt: expected None or 'ue8m0'"),
    ("store_mla_kv", "c_kv", lambda a: a.to(torch.int32), TypeError, "c_kv: expected dtype"),
    ("store_mla_kv", "c_kv", lambda a: a[:, :256].contiguous(), ValueError, "c_kv: expected shape [*, 512]"),
    ("store_mla_kv", "c_kv", _noncontig, ValueError, "c_kv: expected a contiguous"),
    ("store_mla_kv", "k_rope", lambda a: a[:, :32].contiguous(), ValueError, "k_rope: expected shape [5, 64]"),
    ("store_mla_kv", "k_rope", lambda a: a[:-1], ValueError, "k_rope: expected shape [5, 64]"),
    ("store_mla_kv", "k_rope", _meta, ValueError, "k_rope: expected a tensor on cpu"),
    ("store_mla_kv", "k_rope", lambda a: a.long(), TypeError, "k_rope: expected dtype"),
    ("store_mla_kv", "kv_cache", lambda a: a.float(), TypeError, "kv_cache: expected dtype"),
    ("store_mla_kv", "kv_cache", lambda a: torch.zeros(2, 4, 1, 600, dtype=torch.uint8), ValueError, "kv_cache: expected"),
    ("store_mla_kv", "kv_cache", _meta, ValueError, "kv_cache: expected a tensor on cpu"),
    ("store_mla_kv", "kv_cache", _noncontig, ValueError, "kv_cache: expected a contiguous"),
    ("store_mla_kv", "slot_mapping", lambda a: a.to(torch.int16), TypeError, "slot_mapping: expected dtype"),
    ("store_mla_kv", "slot_mapping", lambda a: a[:3], ValueError, "slot_mapping: expected shape [5]"),
    ("store_mla_kv", "slot_mapping", _meta, ValueError, "slot_mapping: expected a tensor on cpu"),
    ("store_mla_kv", "fp8_dtype", lambda a: torch.float16, TypeError, "fp8_dtype"),
]

PUBLIC_OPS = ["indexer_logits", "indexer_logits_paged", "topk_indices", "indexer_topk", "indexer_topk_paged",
              "sparse_mla_prefill", "sparse_mla_decode", "store_indexer_k", "store_mla_kv"]


def _case_id(c):
    return f"{c[0]}-{c[1]}-{CASES.index(c)}"


@pytest.mark.parametrize("op", PUBLIC_OPS)
def test_valid_call_runs(op):
    _call(op, _valid(op))


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_argument_is_named(case):
    op, arg, breaker, exc, msg = case
    kw = _valid(op)
    kw[arg] = breaker(kw.get(arg))
    if exc is None:
        _call(op, kw)  # a control: this change is allowed
        return
    with pytest.raises(exc) as e:
        _call(op, kw)
    assert msg in str(e.value), f"{type(e.value).__name__}: {e.value}"


@pytest.mark.parametrize("op", PUBLIC_OPS)
def test_every_op_covers_the_main_failure_kinds(op):
    """Each op has at least a dtype, a shape and a device case above."""
    kinds = {(c[3], "shape" in c[4] or "expected uint8" in c[4] or "at least" in c[4],
              "on cpu" in c[4]) for c in CASES if c[0] == op and c[3] is not None}
    assert any(k[0] is TypeError for k in kinds), op
    assert any(k[1] for k in kinds), op
    assert any(k[2] for k in kinds), op


@pytest.mark.parametrize("op", ["sparse_mla_prefill", "sparse_mla_decode"])
def test_sm_scale_is_required(op):
    kw = _valid(op)
    del kw["sm_scale"]
    with pytest.raises(TypeError, match="sm_scale"):
        _call(op, kw)


@pytest.mark.parametrize("op", PUBLIC_OPS)
def test_unknown_provider_is_named(op):
    with pytest.raises(ValueError, match="got 'no-such-provider'"):
        getattr(ops, op)(**_valid(op), provider="no-such-provider")


@pytest.mark.parametrize("op", PUBLIC_OPS)
def test_non_tensor_argument(op):
    kw = _valid(op)
    first = next(iter(kw))
    kw[first] = kw[first].tolist()
    with pytest.raises(TypeError, match=f"{first}: expected"):
        _call(op, kw)


def test_fp8_mla_cache_object_and_fp8_dtype_must_agree():
    cache = MLAKVCache(2, page_size=4, kv_dtype="fp8", fp8_dtype=FNUZ)
    q = torch.randn(1, 1, 4, 576, dtype=torch.bfloat16)
    idx = torch.zeros(1, 1, 2, dtype=I32)
    ops.sparse_mla_decode(q, cache, idx, sm_scale=0.1, fp8_dtype=FNUZ, provider="reference")
    with pytest.raises(TypeError, match="fp8_dtype: the kv cache holds torch.float8_e4m3fnuz"):
        ops.sparse_mla_decode(q, cache, idx, sm_scale=0.1, fp8_dtype=FN, provider="reference")
    with pytest.raises(TypeError, match="fp8_dtype"):
        ops.store_mla_kv(torch.randn(1, 512), torch.randn(1, 64), cache, torch.zeros(1, dtype=I64),
                         fp8_dtype=FN, provider="reference")
    # a bf16 cache ignores fp8_dtype
    ops.sparse_mla_decode(q, MLAKVCache(2, page_size=4), idx, sm_scale=0.1, fp8_dtype=FN, provider="reference")


def test_docstrings_name_every_parameter():
    """Each public op documents every parameter by name (FlashMLA's drifted; ours must not)."""
    for name in PUBLIC_OPS + ["quantize_fp8"]:
        fn = getattr(rocm_dsa, name)
        doc = inspect.getdoc(fn) or ""
        assert "Raises" in doc or "Raises:" in doc or name == "quantize_fp8" or "Raises as" in doc, name
        params = [p for p in inspect.signature(fn).parameters if p != "provider"]
        documented_elsewhere = "Arguments as" in doc
        for p in params:
            if documented_elsewhere and p not in ("k", "return_slots"):
                continue
            assert p in doc, f"{name}: parameter {p!r} missing from the docstring"
