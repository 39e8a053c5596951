"""Triton sparse MLA (prefill and split-K decode) against the reference provider.

Small shapes (the CPU interpreter is slow): H 16/32/64/128, topk up to 96, bf16 and 656-byte FP8
caches in both encodings, invalid-index patterns, duplicates, paged caches with shuffled pages,
s_q 1..4, forced split counts, poisoned outputs.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from rocm_dsa import ops
from rocm_dsa.cache import MLAKVCache, pack_mla_fp8
from rocm_dsa.platform import detect
from rocm_dsa.testing import assert_close, poison
from rocm_dsa.triton_kernels.sparse_mla import _xcd_grouped


@triton.jit
def _xcd_probe(out_ptr, NUM_XCDS: tl.constexpr):
    lin = tl.program_id(0)
    tl.store(out_ptr + lin, _xcd_grouped(lin, tl.num_programs(0), NUM_XCDS))


SM_SCALE = 0.1352338  # DeepSeek-V3.2 (YaRN) softmax scale
KV_CASES = [("bf16", torch.float8_e4m3fn), ("fp8", torch.float8_e4m3fn), ("fp8", torch.float8_e4m3fnuz)]
KV_IDS = ["bf16", "fp8-e4m3fn", "fp8-e4m3fnuz"]
# lse / max_logits come from fp32 sums of bf16 products in another order than the reference
F32_TOL = dict(dtype=torch.float32, atol=1e-4, rtol=1e-5)


def _cache_rows(n: int, kv: str, fp8_dtype: torch.dtype, device, *, odd_scales: bool = False) -> torch.Tensor:
    """[n, W] latent rows: bf16 [n, 576] or FP8 records [n, 656] (optionally with non power-of-two
    tile scales, which the kernels must apply exactly as stored)."""
    c_kv, k_rope = torch.randn(n, 512) * 2, torch.randn(n, 64)
    if kv == "bf16":
        return torch.cat([c_kv, k_rope], 1).to(torch.bfloat16).to(device)
    rec = pack_mla_fp8(c_kv, k_rope, fp8_dtype)
    if odd_scales:
        rec[:, 512:528].view(torch.float32).mul_(torch.rand(n, 4) + 0.6)
    return rec.to(device)


def _indices(t: int, topk: int, n: int, device) -> torch.Tensor:
    """[t, topk] int32 with every invalid pattern: leading -1 run, -1 in the middle, indices >= n,
    duplicates, a fully invalid row, a -1 tail."""
    idx = torch.randint(0, n, (t, topk), dtype=torch.int32)
    idx[0, :20] = -1                  # first 16+ entries invalid
    if t > 1:
        idx[1, topk // 2] = -1        # a hole in the middle
        idx[1, 3] = n                 # == N is invalid
        idx[1, 4] = n + 1000          # far out of range
    if t > 2:
        idx[2, :] = -1                # no valid index at all
    if t > 3:
        idx[3, 1::2] = idx[3, 0]      # duplicates count once per occurrence
        idx[3, -9:] = -1              # -1 tail
    return idx.to(device)


def _check_empty_rows(out, lse, valid_rows):
    empty = ~valid_rows
    assert not torch.isnan(out).any() and not torch.isnan(lse).any()
    if empty.any():
        assert (out[empty] == 0).all()
        assert torch.isposinf(lse[empty]).all()


# ---------------------------------------------------------------------------------------------
# prefill
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kv,fp8_dtype", KV_CASES, ids=KV_IDS)
@pytest.mark.parametrize("heads", [16, 64, 128])
def test_prefill_matches_reference(kv, fp8_dtype, heads, device):
    t, n, topk = 5, 300, 80
    q = torch.randn(t, heads, 576).to(torch.bfloat16).to(device)
    rows = _cache_rows(n, kv, fp8_dtype, device, odd_scales=True).unsqueeze(1)
    idx = _indices(t, topk, n, device).unsqueeze(1)
    got = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, fp8_dtype=fp8_dtype, provider="triton")
    want = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, fp8_dtype=fp8_dtype, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="max_logits", **F32_TOL)
    assert_close(got[2], want[2], name="lse", **F32_TOL)
    # row 2 has no valid index: out 0, lse +inf, max_logits -inf
    assert (got[0][2] == 0).all() and torch.isposinf(got[2][2]).all() and torch.isneginf(got[1][2]).all()
    _check_empty_rows(got[0], got[2], torch.isfinite(want[2][:, 0]))


@pytest.mark.parametrize("topk", [5, 16, 33])
def test_prefill_odd_topk_and_heads(topk, device):
    """topk not a multiple of BLOCK_K (or below it) and a head count that fills no block."""
    t, h, n = 3, 20, 64
    q = torch.randn(t, h, 576).to(torch.bfloat16).to(device)
    rows = _cache_rows(n, "bf16", torch.float8_e4m3fn, device).unsqueeze(1)
    idx = torch.randint(-2, n + 2, (t, 1, topk), dtype=torch.int32).to(device)
    got = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, provider="triton")
    want = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, provider="reference")
    for g, w, name in zip(got, want, ("out", "max_logits", "lse")):
        assert_close(g, w, name=name, **({} if name == "out" else F32_TOL))


@pytest.mark.parametrize("tile,kv", [({"UNCHAIN_QK": 1}, "bf16"),
                                     ({"WIDE_LATENT": 1, "UNCHAIN_QK": 1, "Q_IN_LOOP": 1}, "bf16"),
                                     ({"WIDE_LATENT": 1, "IDX_AHEAD": 1}, "bf16"), ({"UNCHAIN_QK": 1}, "fp8")])
def test_prefill_hopper_tile_options_match_the_reference(tile, kv, device):
    """The Hopper tile options over prefill (bf16 rows, and FP8 records with UNCHAIN_QK as the
    sm90 FP8 prefill config runs them): a head count that fills no block (masked heads), -1 /
    out-of-range entries, a row without any valid index."""
    from rocm_dsa.triton_kernels import sparse_mla

    t, h, n, topk = 4, 20, 200, 40
    q = torch.randn(t, h, 576).to(torch.bfloat16).to(device)
    rows = _cache_rows(n, kv, torch.float8_e4m3fn, device, odd_scales=True).unsqueeze(1)
    idx = _indices(t, topk, n, device).unsqueeze(1)
    idx[1, 0, 5:17] = -1
    idx[3, 0, :] = n + 7  # no valid index: out 0, lse +inf, max_logits -inf
    got = sparse_mla.sparse_mla_prefill(q, rows, idx, SM_SCALE, 512, torch.float8_e4m3fn,
                                        arch=detect(device).arch, config={**tile, "BLOCK_H": 16, "BLOCK_K": 16})
    want = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="max_logits", **F32_TOL)
    assert_close(got[2], want[2], name="lse", **F32_TOL)
    assert (got[0][3] == 0).all() and torch.isposinf(got[2][3]).all() and torch.isneginf(got[1][3]).all()


def test_prefill_writes_every_output(device):
    """Poisoned outputs: every element of out / max_logits / lse is written, also for heads that
    only partly fill the last head block."""
    from rocm_dsa.triton_kernels.sparse_mla import _launch

    t, h, n, topk = 4, 24, 100, 40
    q = torch.randn(t, h, 576).to(torch.bfloat16).to(device)
    rows = _cache_rows(n, "fp8", torch.float8_e4m3fn, device)
    idx = _indices(t, topk, n, device)
    out = poison(torch.empty(t, h, 512, dtype=torch.bfloat16, device=device))
    maxl = poison(torch.empty(t, h, device=device))
    lse = poison(torch.empty(t, h, device=device))
    _launch(q, rows, True, idx, SM_SCALE, torch.float8_e4m3fn, detect(device).arch, "sparse_mla_prefill", 1,
            out, lse, (lse.stride(0), 0, lse.stride(1)), maxl, None)
    want = ops.sparse_mla_prefill(q, rows.unsqueeze(1), idx.unsqueeze(1), sm_scale=SM_SCALE,
                                  fp8_dtype=torch.float8_e4m3fn, provider="reference")
    assert_close(out, want[0], name="out")
    assert_close(maxl, want[1], name="max_logits", **F32_TOL)
    assert_close(lse, want[2], name="lse", **F32_TOL)


def test_prefill_fnuz_integer_decoding(monkeypatch, device):
    """The integer e4m3fnuz decoder (used on NVIDIA, where Triton has no fnuz type) is exact."""
    from rocm_dsa.triton_kernels import sparse_mla

    monkeypatch.setattr(sparse_mla, "_fp8_decode_mode",
                        lambda kv_fp8, fp8_dtype, arch: sparse_mla._DECODE_BITS if kv_fp8 else 1)
    t, h, n, topk = 3, 16, 120, 48
    q = torch.randn(t, h, 576).to(torch.bfloat16).to(device)
    rows = _cache_rows(n, "fp8", torch.float8_e4m3fnuz, device, odd_scales=True)
    rows[:7, :512] = torch.arange(7 * 512).reshape(7, 512).remainder(128).to(torch.uint8).to(device)  # every code
    idx = _indices(t, topk, n, device)
    idx[1, :7] = torch.arange(7, dtype=torch.int32)
    got = sparse_mla.sparse_mla_prefill(q, rows.unsqueeze(1), idx.unsqueeze(1), SM_SCALE, 512,
                                        torch.float8_e4m3fnuz, arch=detect(device).arch)
    want = ops.sparse_mla_prefill(q, rows.unsqueeze(1), idx.unsqueeze(1), sm_scale=SM_SCALE,
                                  fp8_dtype=torch.float8_e4m3fnuz, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[2], want[2], name="lse", **F32_TOL)


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------
def _paged_decode_inputs(b, s_q, h, topk, kv, fp8_dtype, device, *, page_size=16, num_pages=9):
    cache = MLAKVCache(num_pages, page_size=page_size, kv_dtype=kv, fp8_dtype=fp8_dtype, device=device)
    n = num_pages * page_size
    c_kv, k_rope = torch.randn(n, 512, device=device) * 2, torch.randn(n, 64, device=device)
    cache.store(c_kv, k_rope, torch.randperm(n, device=device), provider="reference")
    # each request's tokens live on shuffled pages; indices are physical slots
    pages = torch.randperm(num_pages)[: max(2, num_pages - 2)]
    slots = (pages.unsqueeze(1) * page_size + torch.arange(page_size)).reshape(-1)
    idx = slots[torch.randint(0, slots.numel(), (b, s_q, topk))].to(torch.int32)
    idx[0, 0, :17] = -1
    idx[-1, -1, :] = -1                              # a query without any valid slot
    if b * s_q > 2:
        idx[0, -1, 2] = n                            # first slot past the cache
        idx[1 % b, 0, 5:9] = idx[1 % b, 0, 4]        # duplicates
        idx[1 % b, 0, 10] = -1                       # a hole
    q = torch.randn(b, s_q, h, 576).to(torch.bfloat16).to(device)
    return q, cache, idx.to(device)


@pytest.mark.parametrize("kv,fp8_dtype", KV_CASES, ids=KV_IDS)
@pytest.mark.parametrize("b,s_q,heads,splits", [(3, 1, 16, None), (2, 2, 64, 3), (1, 4, 128, 1), (2, 3, 32, 4)])
def test_decode_matches_reference(kv, fp8_dtype, b, s_q, heads, splits, device):
    from rocm_dsa.triton_kernels.sparse_mla import sparse_mla_decode

    topk = 96
    q, cache, idx = _paged_decode_inputs(b, s_q, heads, topk, kv, fp8_dtype, device)
    got = sparse_mla_decode(q, cache.buffer, idx, SM_SCALE, 512, fp8_dtype, arch=detect(device).arch,
                            num_splits=splits)
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert got[1].shape == (b, heads, s_q)
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="lse", **F32_TOL)
    assert (got[0][-1, -1] == 0).all() and torch.isposinf(got[1][-1, :, -1]).all()


@pytest.mark.parametrize("kv,fp8_dtype", KV_CASES[:2], ids=KV_IDS[:2])
def test_decode_through_ops(kv, fp8_dtype, device):
    """The public op with provider="triton" (default split plan) on an MLAKVCache object."""
    q, cache, idx = _paged_decode_inputs(2, 2, 16, 64, kv, fp8_dtype, device, page_size=64, num_pages=3)
    got = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="triton")
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="lse", **F32_TOL)


def test_decode_split_writes_every_output(device):
    """Poisoned out / lse with a split whose keys are all invalid and splits past the last key."""
    from rocm_dsa.triton_kernels.sparse_mla import _launch

    b, s_q, h, topk = 2, 2, 16, 70
    q, cache, idx = _paged_decode_inputs(b, s_q, h, topk, "bf16", torch.float8_e4m3fn, device)
    idx[0, 1, 32:64] = -1  # with 3 splits of 32 keys, split 1 of this row is empty
    rows = cache.buffer.view(-1, 576)
    out = poison(torch.empty(b * s_q, h, 512, dtype=torch.bfloat16, device=device))
    lse = poison(torch.empty(b, h, s_q, device=device))
    _launch(q.view(b * s_q, h, 576), rows, False, idx.view(b * s_q, topk), SM_SCALE, torch.float8_e4m3fn,
            detect(device).arch, "sparse_mla_decode", s_q, out, lse, (lse.stride(0), lse.stride(2), lse.stride(1)),
            None, 3)
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(out.view(b, s_q, h, 512), want[0], name="out")
    assert_close(lse, want[1], name="lse", **F32_TOL)


@pytest.mark.parametrize("kv", ["bf16", "fp8"])
@pytest.mark.parametrize("tile", [{"IDX_AHEAD": 1}, {"Q_IN_LOOP": 1}, {"IDX_AHEAD": 1, "Q_IN_LOOP": 1},
                                  {"UNCHAIN_QK": 1}, {"UNCHAIN_QK": 1, "Q_IN_LOOP": 1, "IDX_AHEAD": 1},
                                  {"WIDE_LATENT": 1}, {"WIDE_LATENT": 1, "UNCHAIN_QK": 1, "Q_IN_LOOP": 1}])
def test_decode_tile_options_match_the_reference(tile, kv, device):
    """The Hopper tile options (indices loaded one block ahead; the query re-read every key
    block; q.k as independent dots with the softmax behind a runtime branch; the 512 latent dims
    as one tile, bf16 only) over split-K decode with -1 entries, against the reference."""
    from rocm_dsa.triton_kernels import sparse_mla

    b, s_q, h, topk = 2, 2, 16, 96
    q, cache, idx = _paged_decode_inputs(b, s_q, h, topk, kv, torch.float8_e4m3fn, device)
    idx[1, 0, 40:70] = -1
    got = sparse_mla.sparse_mla_decode(q, cache.buffer, idx, SM_SCALE, 512, torch.float8_e4m3fn,
                                       arch=detect(device).arch, num_splits=3, config={**tile, "BLOCK_K": 16})
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="lse", **F32_TOL)


@pytest.mark.parametrize("splits", [1, 3])
def test_decode_sm90_tile_writes_every_output(splits, device):
    """The sm90 H >= 64 decode tile (64-head block, UNCHAIN_QK + WIDE_LATENT + IDX_AHEAD +
    Q_IN_LOOP) at H=64 into poisoned outputs, split and unsplit, against the reference."""
    from rocm_dsa.triton_kernels.sparse_mla import _launch

    b, s_q, h, topk = 2, 1, 64, 48
    q, cache, idx = _paged_decode_inputs(b, s_q, h, topk, "bf16", torch.float8_e4m3fn, device)
    rows = cache.buffer.view(-1, 576)
    out = poison(torch.empty(b * s_q, h, 512, dtype=torch.bfloat16, device=device))
    lse = poison(torch.empty(b, h, s_q, device=device))
    tile = {"BLOCK_H": 64, "BLOCK_K": 16, "UNCHAIN_QK": 1, "WIDE_LATENT": 1, "IDX_AHEAD": 1, "Q_IN_LOOP": 1}
    _launch(q.view(b * s_q, h, 576), rows, False, idx.view(b * s_q, topk), SM_SCALE, torch.float8_e4m3fn,
            detect(device).arch, "sparse_mla_decode", s_q, out, lse, (lse.stride(0), lse.stride(2), lse.stride(1)),
            None, splits, overrides=tile)
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(out.view(b, s_q, h, 512), want[0], name="out")
    assert_close(lse, want[1], name="lse", **F32_TOL)


def test_decode_merge_over_several_split_blocks(monkeypatch, device):
    """The merge combines blocks of BLOCK_S splits with a running max: force programs that load
    at most 256 values a step (MERGE_ELEMS; 2 splits x 128 latent dims, 1 head) over 5 splits
    (three split blocks, one split empty, the last block half masked; four latent-dim programs
    per head) and compare with the reference."""
    from rocm_dsa.triton_kernels import sparse_mla
    from rocm_dsa.triton_kernels._common import KernelConfig

    real = sparse_mla.get_config

    def small_blocks(op, arch, **facts):
        cfg = real(op, arch, **facts)
        if op == "sparse_mla_merge":
            return KernelConfig({**cfg.meta, "MERGE_ELEMS": 256}, cfg.options, cfg.source)
        return cfg

    monkeypatch.setattr(sparse_mla, "get_config", small_blocks)
    b, s_q, h, topk = 2, 1, 16, 160
    q, cache, idx = _paged_decode_inputs(b, s_q, h, topk, "bf16", torch.float8_e4m3fn, device)
    idx[0, 0, 64:96] = -1  # with 5 splits of 32 keys, split 2 of row 0 is empty
    got = sparse_mla.sparse_mla_decode(q, cache.buffer, idx, SM_SCALE, 512, torch.float8_e4m3fn,
                                       arch=detect(device).arch, num_splits=5)
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], name="lse", **F32_TOL)


@pytest.mark.parametrize("op,num_xcds,splits", [("decode", 8, 3), ("decode", 6, 2), ("prefill", 8, 1)])
def test_xcd_grouped_program_order_matches_the_reference(op, num_xcds, splits, device):
    """``num_xcds`` renumbers the programs so that each CDNA XCD runs a contiguous range: only the
    order of the work changes. Outputs written everywhere (poisoned first) and equal to the
    reference at H=32 (two 16-head blocks per row) with -1 entries and an empty row."""
    from rocm_dsa.triton_kernels.sparse_mla import _launch

    b, s_q, h, topk = 3, 1, 32, 48
    q, cache, idx = _paged_decode_inputs(b, s_q, h, topk, "bf16", torch.float8_e4m3fn, device)
    rows = cache.buffer.view(-1, 576)
    r = b * s_q
    out = poison(torch.empty(r, h, 512, dtype=torch.bfloat16, device=device))
    cfg = {"num_xcds": num_xcds, "BLOCK_H": 16, "BLOCK_K": 16}
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    if op == "decode":
        lse = poison(torch.empty(b, h, s_q, device=device))
        _launch(q.view(r, h, 576), rows, False, idx.view(r, topk), SM_SCALE, torch.float8_e4m3fn,
                detect(device).arch, "sparse_mla_decode", s_q, out, lse, (lse.stride(0), lse.stride(2), lse.stride(1)),
                None, splits, overrides=cfg)
        assert_close(lse, want[1], name="lse", **F32_TOL)
    else:
        lse = poison(torch.empty(r, h, device=device))
        maxl = poison(torch.empty(r, h, device=device))
        _launch(q.view(r, h, 576), rows, False, idx.view(r, topk), SM_SCALE, torch.float8_e4m3fn,
                detect(device).arch, "sparse_mla_prefill", 1, out, lse, (lse.stride(0), 0, lse.stride(1)),
                maxl, None, overrides=cfg)
        assert_close(lse, want[1].view(r, h), name="lse", **F32_TOL)
        assert not torch.isnan(maxl).any()
    assert_close(out.view(b, s_q, h, 512), want[0], name="out")


@pytest.mark.parametrize("num_xcds", [1, 4, 6, 8])
def test_xcd_grouping_is_a_bijection_with_contiguous_ranges(num_xcds, device):
    """_xcd_grouped maps dispatch order to logical program ids: a permutation of [0, total) in
    which the workgroups of one XCD (dispatch index i runs on XCD i % num_xcds) get one
    contiguous range of logical ids."""
    for total in (1, 3, 8, 10, 17, 64, 303):
        out = torch.full((total,), -1, dtype=torch.int32, device=device)
        _xcd_probe[(total,)](out, NUM_XCDS=num_xcds)
        out = out.cpu()
        assert sorted(out.tolist()) == list(range(total)), (total, out.tolist())
        for x in range(num_xcds):
            ids = out[x::num_xcds].tolist()
            assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True, (total, x, ids)


def test_merge_tile_loads_every_split_at_once_within_merge_elems():
    from rocm_dsa.triton_kernels.sparse_mla import _merge_tile

    meta = {"BLOCK_HM": 4, "MERGE_ELEMS": 8192}
    assert _merge_tile(meta, 1) == (4, 1, 512)
    assert _merge_tile(meta, 2) == (4, 2, 512)
    assert _merge_tile(meta, 3) == (4, 4, 512)
    assert _merge_tile(meta, 8) == (2, 8, 512)
    assert _merge_tile(meta, 32) == (1, 32, 256)    # many splits: narrower latent-dim programs
    assert _merge_tile(meta, 64) == (1, 64, 128)
    assert _merge_tile(meta, 128) == (1, 64, 128)   # more than fits: two split blocks
    assert _merge_tile({**meta, "MAX_BLOCK_S": 16}, 32) == (1, 16, 512)
    # non-power-of-two budgets round down (tl.arange needs powers of two)
    assert _merge_tile({"BLOCK_HM": 4, "MERGE_ELEMS": 6144}, 3) == (2, 4, 512)
    assert _merge_tile({"BLOCK_HM": 8, "MAX_BLOCK_S": 3}, 9) == (8, 2, 512)
    assert _merge_tile({"BLOCK_HM": 3}, 2) == (2, 2, 512)
    for m in (meta, {"BLOCK_HM": 5, "MERGE_ELEMS": 3000, "MAX_BLOCK_S": 6}, {"BLOCK_HM": 1, "MERGE_ELEMS": 100}):
        for splits in range(1, 130):
            hm, bs, bd = _merge_tile(m, splits)
            assert hm * bs * bd <= max(128, m["MERGE_ELEMS"]) and 512 % bd == 0
            assert all(x & (x - 1) == 0 for x in (hm, bs, bd)), (m, splits, hm, bs, bd)


def test_plan_splits_covers_topk():
    from rocm_dsa.triton_kernels.sparse_mla import plan_splits

    for rows, heads, topk, units in [(1, 16, 2048, 304), (64, 16, 2048, 132), (128, 128, 2048, 304),
                                     (4, 64, 100, 8), (3, 128, 1, 8)]:
        splits, keys = plan_splits(rows, heads, topk, arch="gfx942", num_units=units)
        assert splits >= 1 and keys >= 1
        assert (splits - 1) * keys < topk <= splits * keys  # every split has work, all keys covered
    assert plan_splits(1, 16, 2048, arch="gfx942", num_units=304)[0] > 1  # few rows -> split-K
    assert plan_splits(4096, 128, 2048, arch="gfx942", num_units=304)[0] == 1


def test_launchers_reject_bad_arguments():
    from rocm_dsa.triton_kernels.sparse_mla import sparse_mla_decode, sparse_mla_prefill

    q = torch.zeros(2, 16, 576, dtype=torch.bfloat16)
    kv = torch.zeros(8, 1, 576, dtype=torch.bfloat16)
    idx = torch.zeros(2, 1, 4, dtype=torch.int32)
    with pytest.raises(ValueError, match="d_v"):
        sparse_mla_prefill(q, kv, idx, SM_SCALE, 256, torch.float8_e4m3fn, arch="cpu")
    with pytest.raises(ValueError, match="indices"):
        sparse_mla_prefill(q, kv, idx.long(), SM_SCALE, 512, torch.float8_e4m3fn, arch="cpu")
    with pytest.raises(ValueError, match="kv_cache"):
        sparse_mla_prefill(q, torch.zeros(8, 1, 600, dtype=torch.bfloat16), idx, SM_SCALE, 512,
                           torch.float8_e4m3fn, arch="cpu")
    with pytest.raises(ValueError, match="indices"):
        sparse_mla_decode(q.unsqueeze(1), kv, idx.expand(2, 2, 4).contiguous(), SM_SCALE, 512,
                          torch.float8_e4m3fn, arch="cpu")


def test_compile_specs_cover_every_head_count():
    """rocm-dsa compile rows: the fwd kernel at H 16/32/64/128 for both caches and phases."""
    from rocm_dsa.triton_kernels.sparse_mla import compile_specs

    for arch in ("gfx942", "gfx950"):
        names = [s.name for s in compile_specs(arch)]
        for h in (16, 32, 64, 128):
            for phase in ("prefill", "decode"):
                for kv in ("bf16", "fp8"):
                    assert any(n.startswith(f"sparse_mla_{phase} H={h} {kv}") for n in names), (arch, h, phase, kv)
        assert any(n.startswith("sparse_mla_merge") for n in names)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: a > 2 GiB latent cache")
def test_decode_rows_past_2gib():
    """Slots whose byte offset passes 2**31 are read from the right place (64-bit row offsets)."""
    n = (1 << 31) // 1152 + 4096
    buf = torch.zeros(n, 1, 576, dtype=torch.bfloat16, device="cuda")
    buf[-2048:, 0] = torch.randn(2048, 576, device="cuda").to(torch.bfloat16)
    q = torch.randn(2, 1, 16, 576, device="cuda").to(torch.bfloat16)
    idx = torch.randint(n - 2048, n, (2, 1, 256), dtype=torch.int32, device="cuda")
    got = ops.sparse_mla_decode(q, buf, idx, sm_scale=SM_SCALE, provider="triton")
    want = ops.sparse_mla_decode(q, buf, idx, sm_scale=SM_SCALE, provider="reference")
    assert_close(got[0], want[0], name="out")
