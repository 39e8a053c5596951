"""Triton cache writes (indexer key quantize + store, MLA latent store) against the reference:
every byte of the cache buffer must equal the reference provider's, untouched bytes included."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rocm_dsa import ops
from rocm_dsa.cache import IndexerKCache, MLAKVCache, pack_mla_fp8
from rocm_dsa.platform import detect

FP8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz)


def _poisoned(shape, dtype, device):
    """A cache buffer full of 0xA5 bytes, so bytes the kernel must not touch are checked too."""
    buf = torch.full(shape, 0xA5, dtype=torch.uint8, device=device)
    return buf if dtype == torch.uint8 else buf.view(-1).view(dtype).reshape(*shape[:-1], -1)


def _fp8_grid(fp8_dtype: torch.dtype) -> torch.Tensor:
    """Every finite non-negative value of the format, the midpoints between neighbours (ties) and
    points just above/below them, as float32 magnitudes (unit scale)."""
    codes = torch.arange(0, 0x80 if fp8_dtype == torch.float8_e4m3fnuz else 0x7F, dtype=torch.int32)
    vals = codes.to(torch.uint8).view(fp8_dtype).float()
    vals = vals[torch.isfinite(vals)].unique()
    mids = (vals[1:] + vals[:-1]) / 2
    eps = mids * 2.0 ** -20
    return torch.cat([vals, mids, mids + eps, mids - eps, torch.tensor([1e-30, 2.0 ** -12])])


# ---------------------------------------------------------------------------------------------
# indexer keys
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fp8_dtype", FP8, ids=["e4m3fn", "e4m3fnuz"])
@pytest.mark.parametrize("scale_fmt", ["ue8m0", None])
@pytest.mark.parametrize("k_dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_store_indexer_k_bytes(fp8_dtype, scale_fmt, k_dtype, device):
    num_pages, page_size, n = 5, 16, 45
    k = (torch.randn(n, 128) * torch.rand(n, 1) * 8).to(k_dtype)
    k[3] = 0                      # all-zero row: amax floor 1e-4
    k[4, :7] = -1e-12             # tiny negatives: -0 in e4m3fn, +0 in e4m3fnuz
    k[5] *= 300                   # large amax (finite in fp16)
    slots = torch.randperm(num_pages * page_size)[:n]
    slots[[0, 9, 30]] = -1        # padding tokens are skipped
    k, slots = k.to(device), slots.to(device)
    got = _poisoned((num_pages, page_size * 132), torch.uint8, device)
    want = got.clone()
    ops.store_indexer_k(k, got, slots, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt, provider="triton")
    ops.store_indexer_k(k, want, slots, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt, provider="reference")
    assert torch.equal(got, want), f"{int((got != want).sum())} bytes differ"


@pytest.mark.parametrize("fp8_dtype", FP8, ids=["e4m3fn", "e4m3fnuz"])
def test_store_indexer_k_every_code_and_tie(fp8_dtype, device):
    """Values on, between and at the midpoints of every FP8 code (both signs, several scales):
    round to nearest even exactly as torch does; e4m3fnuz never gets byte 0x80."""
    from rocm_dsa.fp8 import quant_max

    grid = _fp8_grid(fp8_dtype)
    rows = []
    for e in (-3, 0, 5):
        scale = 2.0 ** e
        for sign in (1.0, -1.0):
            vals = sign * grid * scale
            for c in range(0, vals.numel(), 127):
                r = torch.zeros(128)
                chunk = vals[c:c + 127]
                r[1:1 + chunk.numel()] = chunk
                r[0] = quant_max(fp8_dtype) * scale  # amax -> scale exactly 2**e (ue8m0)
                rows.append(r)
    k = torch.stack(rows).to(device)
    n = k.shape[0]
    page_size = 16
    num_pages = (n + page_size - 1) // page_size
    slots = torch.arange(n, device=device)
    got = torch.zeros(num_pages, page_size * 132, dtype=torch.uint8, device=device)
    want = got.clone()
    ops.store_indexer_k(k, got, slots, fp8_dtype=fp8_dtype, scale_fmt="ue8m0", provider="triton")
    ops.store_indexer_k(k, want, slots, fp8_dtype=fp8_dtype, scale_fmt="ue8m0", provider="reference")
    assert torch.equal(got, want), f"{int((got != want).sum())} bytes differ"
    if fp8_dtype == torch.float8_e4m3fnuz:
        values = got[:, : page_size * 128]
        assert not (values == 0x80).any()


@given(log_amax=st.floats(-12, 12), seed=st.integers(0, 2**16), int32_slots=st.booleans())
def test_store_indexer_k_property(device, log_amax, seed, int32_slots):
    """Random magnitudes (amax from 2**-12 to 2**12) and slot dtypes: bytes equal the reference."""
    g = torch.Generator().manual_seed(seed)
    k = (torch.randn(9, 128, generator=g) * 2.0 ** log_amax).to(device)
    slots = torch.randperm(32, generator=g)[:9]
    slots[2] = -5
    slots = slots.to(torch.int32 if int32_slots else torch.int64).to(device)
    for fp8_dtype in FP8:
        got = torch.zeros(2, 16 * 132, dtype=torch.uint8, device=device)
        want = got.clone()
        ops.store_indexer_k(k, got, slots, fp8_dtype=fp8_dtype, provider="triton")
        ops.store_indexer_k(k, want, slots, fp8_dtype=fp8_dtype, provider="reference")
        assert torch.equal(got, want)


def test_store_indexer_k_cache_object_and_empty(device):
    cache = IndexerKCache(3, page_size=64, fp8_dtype=torch.float8_e4m3fnuz, device=device)
    ref = IndexerKCache(3, page_size=64, fp8_dtype=torch.float8_e4m3fnuz, device=device)
    k = torch.randn(70, 128, device=device)
    slots = torch.randperm(192, device=device)[:70]
    cache.store(k, slots, provider="triton")
    ref.store(k, slots, provider="reference")
    assert torch.equal(cache.buffer, ref.buffer)
    before = cache.buffer.clone()
    cache.store(k[:0], slots[:0], provider="triton")  # no tokens: nothing written, no launch
    assert torch.equal(cache.buffer, before)


# ---------------------------------------------------------------------------------------------
# MLA latents
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kv_dtype,fp8_dtype", [("bf16", None), ("fp8", torch.float8_e4m3fn),
                                                ("fp8", torch.float8_e4m3fnuz)],
                         ids=["bf16", "fp8-e4m3fn", "fp8-e4m3fnuz"])
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_store_mla_kv_bytes(kv_dtype, fp8_dtype, in_dtype, device):
    num_pages, page_size, n = 6, 16, 50
    c_kv = (torch.randn(n, 512) * torch.rand(n, 1) * 4).to(in_dtype)
    c_kv[1, :128] = 0                         # an all-zero tile
    c_kv[2, 128:256] *= 1000                  # one large tile
    k_rope = torch.randn(n, 64).to(in_dtype)
    if in_dtype == torch.float32:             # exact bf16 ties (round half to even)
        k_rope[0, :32] = 1.0 + (torch.arange(32) + 0.5) * 2.0 ** -7
    slots = torch.randperm(num_pages * page_size)[:n]  # shuffled across pages
    slots[[5, 17]] = -1
    c_kv, k_rope, slots = c_kv.to(device), k_rope.to(device), slots.to(device)
    if kv_dtype == "bf16":
        got = _poisoned((num_pages, page_size, 1, 1152), torch.bfloat16, device)
    else:
        got = _poisoned((num_pages, page_size, 1, 656), torch.uint8, device)
    want = got.clone()
    ops.store_mla_kv(c_kv, k_rope, got, slots, fp8_dtype=fp8_dtype, provider="triton")
    ops.store_mla_kv(c_kv, k_rope, want, slots, fp8_dtype=fp8_dtype, provider="reference")
    gb, wb = got.view(torch.uint8) if got.dtype == torch.uint8 else got.view(torch.int16), \
        want.view(torch.uint8) if want.dtype == torch.uint8 else want.view(torch.int16)
    assert torch.equal(gb, wb), f"{int((gb != wb).sum())} elements differ"


@pytest.mark.parametrize("fp8_dtype", FP8, ids=["e4m3fn", "e4m3fnuz"])
def test_store_mla_kv_record_matches_pack(fp8_dtype, device):
    """The 656-byte record equals rocm_dsa.cache.pack_mla_fp8 (the layout codec) directly."""
    cache = MLAKVCache(2, page_size=64, kv_dtype="fp8", fp8_dtype=fp8_dtype, device=device)
    c_kv, k_rope = torch.randn(40, 512, device=device), torch.randn(40, 64, device=device)
    slots = torch.randperm(128, device=device)[:40]
    cache.store(c_kv, k_rope, slots, provider="triton")
    rows = cache.buffer.view(-1, 656)[slots]
    assert torch.equal(rows, pack_mla_fp8(c_kv, k_rope, fp8_dtype))
    if fp8_dtype == torch.float8_e4m3fnuz:
        assert not (rows[:, :512] == 0x80).any()


def test_store_launchers_reject_bad_buffers():
    from rocm_dsa.triton_kernels.cache_store import store_indexer_k, store_mla_kv

    with pytest.raises(ValueError, match="buf"):
        store_indexer_k(torch.randn(2, 128), torch.zeros(2, 100, dtype=torch.uint8), torch.zeros(2, dtype=torch.long),
                        torch.float8_e4m3fn, "ue8m0", arch="cpu")
    with pytest.raises(ValueError, match="scale_fmt"):
        store_indexer_k(torch.randn(2, 128), torch.zeros(1, 132 * 4, dtype=torch.uint8),
                        torch.zeros(2, dtype=torch.long), torch.float8_e4m3fn, "e8m0", arch="cpu")
    with pytest.raises(ValueError, match="kv_cache"):
        store_mla_kv(torch.randn(2, 512), torch.randn(2, 64), torch.zeros(4, 600, dtype=torch.uint8),
                     torch.zeros(2, dtype=torch.long), torch.float8_e4m3fn, arch="cpu")
    with pytest.raises(TypeError, match="fp8_dtype"):
        store_mla_kv(torch.randn(2, 512), torch.randn(2, 64), torch.zeros(4, 656, dtype=torch.uint8),
                     torch.zeros(2, dtype=torch.long), torch.float16, arch="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: a > 2 GiB cache buffer")
def test_store_mla_kv_past_2gib():
    """Slots whose byte offset passes 2**31 land where the reference puts them (64-bit offsets)."""
    n_slots = (1 << 31) // 1152 + 4096
    buf = torch.zeros(n_slots, 1, 576, dtype=torch.bfloat16, device="cuda")
    c_kv, k_rope = torch.randn(8, 512, device="cuda"), torch.randn(8, 64, device="cuda")
    slots = torch.arange(n_slots - 8, n_slots, device="cuda")
    ops.store_mla_kv(c_kv, k_rope, buf, slots, provider="triton")
    want = torch.cat([c_kv, k_rope], 1).to(torch.bfloat16)
    assert torch.equal(buf[-8:, 0], want)
    assert detect(buf.device).arch != "cpu"


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
def test_slots_past_the_cache_are_skipped(kv_dtype):
    """A slot >= num_pages * page_size must be skipped, never written out of bounds (the kernel
    masks it; before the bound an interpreter run corrupted the heap)."""
    torch.manual_seed(5)
    mla = MLAKVCache(1, page_size=4, kv_dtype=kv_dtype)
    idx = IndexerKCache(1, page_size=4)
    slots = torch.tensor([4, 50, 100000, 2], dtype=torch.int64)  # only slot 2 exists
    c_kv, k_rope, k = torch.randn(4, 512), torch.randn(4, 64), torch.randn(4, 128)
    mla.store(c_kv, k_rope, slots, provider="triton")
    idx.store(k, slots, provider="triton")
    ref_mla = MLAKVCache(1, page_size=4, kv_dtype=kv_dtype)
    ref_idx = IndexerKCache(1, page_size=4)
    ref_mla.store(c_kv, k_rope, slots, provider="reference")
    ref_idx.store(k, slots, provider="reference")
    assert torch.equal(mla.buffer.view(torch.uint8), ref_mla.buffer.view(torch.uint8))
    assert torch.equal(idx.buffer, ref_idx.buffer)
