"""The vendor providers (flashmla, deepgemm, aiter) on a machine without their libraries.

1. Without the vendor package (or GPU) each provider is unavailable with a clear reason, the
   registry reports it, and ``import rocm_dsa`` never breaks.
2. With a stand-in module that follows the vendor's documented interface and constraints (its
   numerics come from the reference provider, its quirks - head counts, top-k tiles, no bound
   check, compressed or unmasked outputs, unordered top-k - are modelled), each provider's
   wiring is checked end to end against the reference on the CPU. The real kernels run on
   the H200 (scripts/cross_provider_check.py) and on ROCm machines (``rocm-dsa check``).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest
import torch

import rocm_dsa.backends.reference as reference
import rocm_dsa.ops as ops
from rocm_dsa import platform
from rocm_dsa.backends import ProviderError, get_provider, make_case
from rocm_dsa.cache import IndexerKCache, MLAKVCache, indexer_cache_gather, positions_to_slots
from rocm_dsa.fp8 import cast_to_fp8
from rocm_dsa.testing import assert_close, assert_topk_equal
from aiter_model import aiter_ragged_model

REF = "reference"
SM_SCALE = 0.1352338
FN = torch.float8_e4m3fn
I32 = torch.int32
VENDORS = ("flashmla", "deepgemm", "aiter")


# ---------------------------------------------------------------------------------------------
# 1. unavailable on this machine
# ---------------------------------------------------------------------------------------------
def test_import_rocm_dsa_never_imports_vendor_libraries():
    code = ("import sys, rocm_dsa, rocm_dsa.ops\n"
            "from rocm_dsa.backends import get_provider\n"
            "ps = [get_provider(n) for n in ('flashmla', 'deepgemm', 'aiter')]\n"
            "print(sorted(m for m in ('flash_mla', 'deep_gemm', 'aiter') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", VENDORS)
def test_unavailable_with_a_reason(name):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: availability depends on the installed vendor libraries")
    p = get_provider(name)
    assert p.name == name and p.description
    why = p.unavailable_reason()
    assert isinstance(why, str) and why
    case = make_case(sorted(p.ops)[0], torch.device("cpu"), heads=64, dtypes={"q_fp8": FN}, kv_format="bf16")
    assert p.supports(case) == [why]


def test_reasons_name_the_missing_piece(monkeypatch):
    from rocm_dsa.backends import aiter, deepgemm, flashmla

    for mod in (flashmla, deepgemm, aiter):
        mod._unavailable.cache_clear()
    try:
        real_import = importlib.import_module

        def no_vendor(name, *a, **k):
            if name.split(".")[0] in ("flash_mla", "deep_gemm", "aiter"):
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return real_import(name, *a, **k)

        monkeypatch.setattr(importlib, "import_module", no_vendor)
        assert flashmla._unavailable() == ("flash_mla is not installed (No module named 'flash_mla'); "
                                           "pip install --no-deps sgl-flash-mla")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.version, "hip", None)
        deepgemm._unavailable.cache_clear()
        assert deepgemm._unavailable() == ("deep_gemm is not installed (No module named 'deep_gemm'); "
                                           "pip install --no-deps sgl-deep-gemm")
        aiter._unavailable.cache_clear()
        assert aiter._unavailable() == "aiter needs a ROCm build of PyTorch (this one is not)"
        monkeypatch.setattr(torch.version, "hip", "6.4")
        aiter._unavailable.cache_clear()
        assert aiter._unavailable() == "aiter is not installed (No module named 'aiter'); pip install amd-aiter"
    finally:
        for mod in (flashmla, deepgemm, aiter):
            mod._unavailable.cache_clear()


def test_broken_vendor_import_is_a_reason_not_an_exception(monkeypatch):
    from rocm_dsa.backends import deepgemm

    def broken():
        try:
            raise OSError("libnvrtc.so.13: cannot open shared object file: No such file or directory")
        except OSError as e:
            raise OSError("Could not load this library: /tmp/site/deep_gemm/_C.so") from e

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(deepgemm, "_module", broken)
    deepgemm._unavailable.cache_clear()
    try:
        assert deepgemm._unavailable() == (
            "deep_gemm failed to import: OSError: Could not load this library: /tmp/site/deep_gemm/_C.so <- "
            "OSError: libnvrtc.so.13: cannot open shared object file: No such file or directory")
    finally:
        deepgemm._unavailable.cache_clear()


def test_explicit_vendor_choice_raises_provider_error_on_cpu():
    q = torch.randn(2, 16, 576).to(torch.bfloat16)
    kv = torch.randn(8, 1, 576).to(torch.bfloat16)
    idx = torch.zeros(2, 1, 4, dtype=I32)
    with pytest.raises(ProviderError, match="flashmla"):
        ops.sparse_mla_prefill(q, kv, idx, sm_scale=SM_SCALE, provider="flashmla")


def test_case_reasons_state_the_constraints():
    from rocm_dsa.backends import aiter, deepgemm, flashmla

    fp8_prefill = make_case("sparse_mla_prefill", torch.device("cpu"), heads=128, kv_format="fp8", topk=2048)
    assert flashmla.PROVIDER.case_reasons(fp8_prefill) == ["flash_mla_sparse_fwd reads bf16 latent rows only "
                                                           "(no FP8 prefill)"]
    assert flashmla.PROVIDER.case_reasons(make_case("sparse_mla_decode", torch.device("cpu"), heads=16,
                                                    kv_format="fp8", s_q=1, topk=100)) == []
    c = make_case("indexer_logits", torch.device("cpu"), heads=48, dtypes={"q_fp8": torch.float8_e4m3fnuz},
                  head_dim=96)
    c = type(c)(c.op, "cuda", "sm90", c.dtypes, c.heads, c.extra)
    assert deepgemm.PROVIDER.case_reasons(c) == [
        "takes OCP torch.float8_e4m3fn operands, not torch.float8_e4m3fnuz",
        "supports indexer heads [32, 64] on sm90, not 48",
        "supports head_dim [32, 64, 128], not 96",
    ]
    t = make_case("topk_indices", torch.device("cpu"), k=4096, columns=10)
    assert aiter.PROVIDER.case_reasons(t) == ["top_k_per_row is fixed at k=2048, not 4096"]
    m = make_case("sparse_mla_decode", torch.device("cpu"), heads=16, kv_format="fp8", s_q=1, topk=2048)
    assert aiter.PROVIDER.case_reasons(m) == ["aiter's MLA kernels take per-tensor-scaled FP8, not 656-byte "
                                              "tile-scaled records"]


# ---------------------------------------------------------------------------------------------
# 2. stand-in vendor modules
# ---------------------------------------------------------------------------------------------
def _empty_rows_as_a_kernel_might(out, lse, empty):
    """Vendor kernels may report an empty row as NaN output and -inf LSE: the provider fixes that."""
    out = out.clone()
    lse = lse.clone()
    out[empty] = float("nan")
    lse[empty] = float("-inf")
    return out, lse


def _fake_flash_mla():
    m = types.ModuleType("flash_mla")
    m.calls = []

    def flash_mla_sparse_fwd(q, kv, indices, sm_scale, d_v=512, use_legacy=False):
        assert use_legacy and q.is_contiguous() and q.shape[1] in (64, 128) and q.shape[2] == 576
        assert indices.shape[-1] % 64 == 0 and indices.dim() == 3 and kv.dim() == 3
        m.calls.append(("prefill", q.shape[1], indices.shape[-1]))
        out, ml, lse = reference._sparse_attention(q, kv[:, 0], indices[:, 0], sm_scale, d_v, FN)
        out, lse = _empty_rows_as_a_kernel_might(out, lse, torch.isposinf(lse))
        return out, ml, lse

    def flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                               num_splits=None, softmax_scale=None, causal=False, is_fp8_kvcache=None,
                               indices=None, use_legacy=False, **kw):
        assert use_legacy and is_fp8_kvcache and softmax_scale is not None and tile_scheduler_metadata is not None
        assert k_cache.dtype == FN and k_cache.dim() == 4 and k_cache.shape[2:] == (1, 656)
        assert q.shape[2] in (64, 128) and indices.shape[-1] % 64 == 0
        n = k_cache.shape[0] * k_cache.shape[1]
        bad = (indices != -1) & ((indices < 0) | (indices >= n))
        assert not bool(bad.any()), "FlashMLA decode does no bound check: invalid indices must be -1"
        m.calls.append(("decode", q.shape[2], indices.shape[-1]))
        return ops.sparse_mla_decode(q, k_cache.view(torch.uint8), indices, sm_scale=softmax_scale,
                                     fp8_dtype=FN, provider=REF)

    m.flash_mla_sparse_fwd = flash_mla_sparse_fwd
    m.flash_mla_with_kvcache = flash_mla_with_kvcache
    m.get_mla_metadata = lambda *a, **k: (types.SimpleNamespace(), None)
    m.has_legacy = lambda: True
    return m


@pytest.fixture
def fake_flash_mla(monkeypatch):
    from rocm_dsa.backends import flashmla

    m = _fake_flash_mla()
    monkeypatch.setitem(sys.modules, "flash_mla", m)
    flashmla._unavailable.cache_clear()
    flashmla._sched_meta.cache_clear()
    yield m
    flashmla._unavailable.cache_clear()
    flashmla._sched_meta.cache_clear()


def _mla_inputs(kv_format, n_pages=6, page=16):
    cache = MLAKVCache(n_pages, page_size=page, kv_dtype=kv_format, fp8_dtype=FN)
    n = n_pages * page
    cache.store(torch.randn(n, 512), torch.randn(n, 64), torch.arange(n), provider=REF)
    return cache, n


def _bad_indices(rows, topk, n):
    idx = torch.randint(0, n, (rows, topk), dtype=I32)
    idx[0, ::4] = -1
    idx[1, :3] = n + 5
    idx[1, 3] = -3
    idx[-1] = -1
    return idx


def test_flashmla_reason_with_the_module_present_is_the_device(fake_flash_mla):
    from rocm_dsa.backends import flashmla

    if not torch.cuda.is_available():
        assert flashmla._unavailable() == "no CUDA device"


@pytest.mark.parametrize("heads", [16, 32, 128, 200])
def test_flashmla_prefill_wiring(fake_flash_mla, heads):
    cache, n = _mla_inputs("bf16")
    t = 4
    q = torch.randn(t, heads, 576).to(torch.bfloat16)
    idx = _bad_indices(t, 40, n).unsqueeze(1)
    want = ops.sparse_mla_prefill(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    got = get_provider("flashmla").sparse_mla_prefill(q, cache.buffer, idx, SM_SCALE, 512, FN)
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], dtype=torch.float32, name="max_logits")
    assert_close(got[2], want[2], dtype=torch.float32, name="lse")
    assert {c[1] for c in fake_flash_mla.calls} == {64 if heads <= 64 else 128}
    assert all(c[2] == 128 for c in fake_flash_mla.calls)  # topk 40 padded to the tile


@pytest.mark.parametrize("kv_format,heads,s_q", [("fp8", 16, 1), ("fp8", 32, 2), ("fp8", 128, 1), ("bf16", 16, 2)])
def test_flashmla_decode_wiring(fake_flash_mla, kv_format, heads, s_q):
    cache, n = _mla_inputs(kv_format)
    b = 3
    q = torch.randn(b, s_q, heads, 576).to(torch.bfloat16)
    idx = _bad_indices(b * s_q, 70, n).view(b, s_q, 70)
    want = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    got = get_provider("flashmla").sparse_mla_decode(q, cache.buffer, idx, SM_SCALE, 512, FN)
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], dtype=torch.float32, name="lse")
    kind = "decode" if kv_format == "fp8" else "prefill"
    assert fake_flash_mla.calls and all(c[0] == kind for c in fake_flash_mla.calls)


def test_flashmla_refuses_fnuz_records(fake_flash_mla):
    cache, n = _mla_inputs("fp8")
    q = torch.randn(1, 1, 64, 576).to(torch.bfloat16)
    with pytest.raises(TypeError, match="e4m3fn"):
        get_provider("flashmla").sparse_mla_decode(q, cache.buffer, torch.zeros(1, 1, 64, dtype=I32), SM_SCALE,
                                                   512, torch.float8_e4m3fnuz)


# --- DeepGEMM ---------------------------------------------------------------------------------
def _fake_deep_gemm():
    m = types.ModuleType("deep_gemm")
    m.calls = []

    def fp8_fp4_mqa_logits(q, kv, weights, ks, ke, max_seqlen_k, schedule_meta=None):
        (qf, q_sf), (k, k_sf) = q, kv
        assert q_sf is None and qf.dtype == FN and qf.shape[1] in (32, 64) and max_seqlen_k > 0
        n = k.shape[0]
        full = ops.indexer_logits(qf, k, k_sf, weights, torch.zeros_like(ks), torch.full_like(ke, n), provider=REF)
        comp = torch.full((qf.shape[0], max_seqlen_k + 16), 777.0)[:, :max_seqlen_k]  # garbage, padded rows
        for t in range(qf.shape[0]):
            comp[t, : ke[t] - ks[t]] = full[t, ks[t]:ke[t]]
        m.calls.append("ragged")
        return comp

    def fp8_fp4_paged_mqa_logits(q, kv_cache, weights, context_lens, block_table, schedule_meta, max_context_len,
                                 indices=None):
        qf, _ = q
        b, next_n, h, d = qf.shape
        assert context_lens.shape == (b, next_n) and kv_cache.shape[2:] == (1, d + 4) and h in (32, 64)
        assert next_n in (1, 2, 4) and block_table.shape[0] == b
        page = kv_cache.shape[1]
        buf = kv_cache.reshape(kv_cache.shape[0], -1)
        out = torch.full((b * next_n, max_context_len), 555.0)  # not written past each row's length
        for i in range(b):
            for j in range(next_n):
                length = int(context_lens[i, j])
                if length == 0:
                    continue
                pos = torch.arange(length)
                slots = block_table[i].long()[pos // page] * page + pos % page
                k, ks = indexer_cache_gather(buf, slots, FN, d)
                s = torch.einsum("hd,cd->hc", qf[i, j].float(), k.float()).clamp_min(0)
                out[i * next_n + j, :length] = (s * weights[i * next_n + j].unsqueeze(1)).sum(0) * ks
        m.calls.append(("paged", next_n))
        return out

    m.fp8_fp4_mqa_logits = fp8_fp4_mqa_logits
    m.fp8_fp4_paged_mqa_logits = fp8_fp4_paged_mqa_logits
    m.get_paged_mqa_logits_metadata = lambda context_lens, block_kv, num_sms, indices=None: torch.zeros(num_sms + 1, 2)
    m.get_num_sms = lambda: 132
    return m


@pytest.fixture
def fake_deep_gemm(monkeypatch):
    from rocm_dsa.backends import deepgemm

    m = _fake_deep_gemm()
    monkeypatch.setitem(sys.modules, "deep_gemm", m)
    monkeypatch.setattr(deepgemm, "detect", lambda dev=None: platform.for_arch("sm90"))
    yield m


def test_deepgemm_ragged_wiring(fake_deep_gemm):
    t, n, h = 6, 90, 32
    q = cast_to_fp8(torch.randn(t, h, 128) * 2, FN)
    k = cast_to_fp8(torch.randn(n, 128) * 2, FN)
    sc = torch.rand(n) + 0.5
    w = torch.randn(t, h)
    ks = torch.tensor([0, 0, 5, 30, 89, 90], dtype=I32)
    ke = torch.tensor([1, 90, 40, 30, 90, 90], dtype=I32)
    want = ops.indexer_logits(q, k, sc, w, ks, ke, provider=REF)
    got = get_provider("deepgemm").indexer_logits(q, k, sc, w, ks, ke)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)


def _paged(next_n, lens=(3, 40, 64, 1), page=16, h=32):
    b = len(lens)
    maxp = -(-max(lens) // page) + 1
    cache = IndexerKCache(b * maxp + 1, page_size=page, fp8_dtype=FN)
    table = torch.randperm(cache.num_pages)[: b * maxp].view(b, maxp).to(I32)
    for i, length in enumerate(lens):
        slots = positions_to_slots(torch.arange(length).view(1, -1), table[i:i + 1], page).view(-1)
        cache.store(torch.randn(length, 128), slots.long(), provider=REF)
    q = cast_to_fp8(torch.randn(b, next_n, h, 128) * 2, FN)
    return q, cache, torch.randn(b * next_n, h), torch.tensor(lens, dtype=I32), table


@pytest.mark.parametrize("next_n", [1, 2, 3])
def test_deepgemm_paged_wiring(fake_deep_gemm, next_n):
    q, cache, w, lens, table = _paged(next_n)
    want = ops.indexer_logits_paged(q, cache, w, lens, table, provider=REF)
    got = get_provider("deepgemm").indexer_logits_paged(q, cache.buffer, w, lens, table)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)
    assert fake_deep_gemm.calls == [("paged", next_n if next_n in (1, 2, 4) else 1)]


# --- aiter ------------------------------------------------------------------------------------
def _fake_aiter(arch_fp8):
    aiter = types.ModuleType("aiter")
    aiter.calls = []

    def fp8_mqa_logits(Q, KV, kv_scales, weights, cu_starts, cu_ends):
        assert Q.dtype == KV.dtype == arch_fp8
        n = KV.shape[0]
        full = ops.indexer_logits(Q, KV, kv_scales, weights, torch.zeros_like(cu_starts),
                                  torch.full_like(cu_ends, n), provider=REF)
        aiter.calls.append("fp8_mqa_logits")
        return aiter_ragged_model(full, cu_starts, cu_ends, 128)

    def deepgemm_fp8_paged_mqa_logits(q, kv_cache, weights, out, context_lens, kv_indices, max_model_len, **kw):
        rows, next_n, h, d = q.shape
        assert next_n == 1 and kv_cache.shape[1:] == (1, 1, d + 4)
        rec = kv_cache.view(-1, d + 4)
        kf = rec[:, :d].contiguous().view(arch_fp8).float()
        ks = rec[:, d:].contiguous().view(torch.float32).view(-1)
        for r in range(rows):
            length = int(context_lens[r])
            if length == 0:
                continue
            sel = kv_indices[r, :length].long()
            s = torch.einsum("hd,cd->hc", q[r, 0].float(), kf[sel]).clamp_min(0)
            out[r, :length] = (s * weights[r].unsqueeze(1)).sum(0) * ks[sel]
            if length < out.shape[1]:
                out[r, length] = 0.0  # the kernel's mask lets column == length through
        aiter.calls.append("paged")

    def top_k_per_row_prefill(logits, row_starts, row_ends, indices, values, num_rows, stride0, stride1):
        assert not bool(row_starts.any())
        k = indices.shape[1]
        for r in range(num_rows):
            e = int(row_ends[r])
            cols = torch.arange(e) if e <= k else torch.topk(logits[r, :e], k).indices
            indices[r].fill_(-1)
            indices[r, : cols.numel()] = cols[torch.randperm(cols.numel())].to(I32)
        aiter.calls.append("topk")

    def mla_decode_stage1_asm_fwd(q, kv, qo_indptr, kv_indptr, kv_indices, last_page, splits, wm, wi, ws,
                                  max_seqlen_q, sm_scale, part, part_lse, o, q_scale, kv_scale):
        assert q.shape[1] in (16, 128) and kv.shape[1:3] == (1, 1) and max_seqlen_q == 1
        assert torch.equal(splits, torch.arange(q.shape[0] + 1, dtype=I32))
        rows = kv[:, 0, 0]
        for r in range(q.shape[0]):
            sel = kv_indices[kv_indptr[r]:kv_indptr[r + 1]].long()
            if sel.numel() == 0:
                part[r, 0] = float("nan")
                part_lse[r, 0, :, 0] = float("-inf")
                continue
            s = q[r].float() @ rows[sel].float().T * sm_scale
            part_lse[r, 0, :, 0] = torch.logsumexp(s, 1)
            part[r, 0] = torch.softmax(s, 1) @ rows[sel, :512].float()
        aiter.calls.append(("mla", q.shape[1]))

    aiter.top_k_per_row_prefill = top_k_per_row_prefill
    aiter.mla_decode_stage1_asm_fwd = mla_decode_stage1_asm_fwd
    ragged = types.ModuleType("aiter.ops.triton.fp8_mqa_logits")
    ragged.fp8_mqa_logits = fp8_mqa_logits
    paged = types.ModuleType("aiter.ops.triton.pa_mqa_logits")
    paged.deepgemm_fp8_paged_mqa_logits = deepgemm_fp8_paged_mqa_logits
    return aiter, ragged, paged


@pytest.fixture(params=["gfx942", "gfx950"])
def fake_aiter(monkeypatch, request):
    from rocm_dsa.backends import aiter as ap

    arch = platform.for_arch(request.param)
    m, ragged, paged = _fake_aiter(arch.fp8_dtype)
    monkeypatch.setitem(sys.modules, "aiter", m)
    monkeypatch.setitem(sys.modules, "aiter.ops.triton.fp8_mqa_logits", ragged)
    monkeypatch.setitem(sys.modules, "aiter.ops.triton.pa_mqa_logits", paged)
    monkeypatch.setattr(ap, "detect", lambda dev=None: arch)
    yield m


def _ragged(t=5, n=300, h=16):
    q = cast_to_fp8(torch.randn(t, h, 128) * 2, FN)
    k = cast_to_fp8(torch.randn(n, 128) * 2, FN)
    sc = torch.exp2(torch.randint(-2, 2, (n,)).float())
    w = torch.randn(t, h)
    ks = torch.tensor([0, 10, 130, 299, 7], dtype=I32)[:t]
    ke = torch.tensor([300, 140, 140, 300, 7], dtype=I32)[:t]
    return q, k, sc, w, ks, ke


def test_aiter_ragged_logits_and_topk_wiring(fake_aiter):
    q, k, sc, w, ks, ke = _ragged()
    p = get_provider("aiter")
    want = ops.indexer_logits(q, k, sc, w, ks, ke, provider=REF)
    got = p.indexer_logits(q, k, sc, w, ks, ke)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)
    assert_topk_equal(p.indexer_topk(q, k, sc, w, ks, ke, 64), ops.indexer_topk(q, k, sc, w, ks, ke, k=64,
                                                                                 provider=REF))


def test_aiter_topk_indices_wiring(fake_aiter):
    x = torch.randn(4, 2500)
    x[1, 100:2400] = float("-inf")   # short candidate list inside a long window
    x[2, 5] = float("nan")
    starts = torch.tensor([0, 0, 3, 2000], dtype=I32)
    ends = torch.tensor([2500, 2500, 2200, 2100], dtype=I32)
    for k in (2048, 100):
        got = get_provider("aiter").topk_indices(x, starts, ends, k)
        assert torch.equal(got, ops.topk_indices(x, starts, ends, k=k, provider=REF))


@pytest.mark.parametrize("next_n", [1, 2])
def test_aiter_paged_wiring(fake_aiter, next_n):
    q, cache, w, lens, table = _paged(next_n, h=16)
    p = get_provider("aiter")
    want = ops.indexer_logits_paged(q, cache, w, lens, table, provider=REF)
    got = p.indexer_logits_paged(q, cache.buffer, w, lens, table)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)
    for slots in (False, True):
        assert_topk_equal(p.indexer_topk_paged(q, cache.buffer, w, lens, table, 8, slots),
                          ops.indexer_topk_paged(q, cache, w, lens, table, k=8, return_slots=slots, provider=REF))


@pytest.mark.parametrize("heads", [16, 32])
def test_aiter_sparse_mla_wiring(fake_aiter, heads):
    cache, n = _mla_inputs("bf16")
    p = get_provider("aiter")
    q = torch.randn(4, heads, 576).to(torch.bfloat16)
    idx = _bad_indices(4, 24, n).unsqueeze(1)
    want = ops.sparse_mla_prefill(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    got = p.sparse_mla_prefill(q, cache.buffer, idx, SM_SCALE, 512, FN)
    assert_close(got[0], want[0], name="out")
    assert_close(got[1], want[1], dtype=torch.float32, name="max_logits")
    assert_close(got[2], want[2], dtype=torch.float32, name="lse")
    qd = q.view(2, 2, heads, 576)
    want_d = ops.sparse_mla_decode(qd, cache, idx.view(2, 2, 24), sm_scale=SM_SCALE, provider=REF)
    got_d = p.sparse_mla_decode(qd, cache.buffer, idx.view(2, 2, 24), SM_SCALE, 512, FN)
    assert_close(got_d[0], want_d[0], name="out")
    assert_close(got_d[1], want_d[1], dtype=torch.float32, name="lse")
    assert {c[1] for c in fake_aiter.calls if isinstance(c, tuple)} == {16 if heads == 16 else 128}
