"""Paged caches: byte layouts of the indexer key cache and the MLA latent cache (bf16 and the
656-byte FP8 record), slot mapping, page tables, 64-bit offsets. Layouts are checked on the
raw bytes, decoded independently of rocm_dsa.cache."""

from __future__ import annotations

import pytest
import torch

import rocm_dsa.ops as ops
from rocm_dsa.cache import (
    MLA_FP8_RECORD_BYTES,
    IndexerKCache,
    MLAKVCache,
    indexer_cache_gather,
    indexer_cache_views,
    mla_cache_rows,
    pack_mla_fp8,
    positions_to_slots,
    unpack_mla_fp8,
)
from rocm_dsa.fp8 import quantize_fp8

REF = "reference"
POISON = 0xA5


def _decode_record(rec: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """Independent decoder of one 656-byte record -> [576] float64."""
    assert rec.shape == (656,) and rec.dtype == torch.uint8
    vals = rec[:512].clone().view(fp8_dtype).double()
    scales = rec[512:528].clone().view(torch.float32).double()
    rope = rec[528:656].clone().view(torch.bfloat16).double()
    return torch.cat([vals * scales.repeat_interleave(128), rope])


# ---------------------------------------------------------------------------------------------
# indexer key cache
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale_fmt", ["ue8m0", None])
@pytest.mark.parametrize("slot_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("page_size", [4, 64])
def test_store_indexer_k_page_layout(fp8_dtype, scale_fmt, slot_dtype, page_size):
    num_pages = 4  # the last page stays unwritten: a -1 slot wrapping to it shows up
    cache = IndexerKCache(num_pages, page_size=page_size, fp8_dtype=fp8_dtype)
    cache.buffer.fill_(POISON)
    slots = [page_size + 1, -1, 0, 3 * page_size - 1, 2 * page_size, -5, page_size - 1]
    k = torch.randn(len(slots), 128, dtype=torch.bfloat16) * 4
    ops.store_indexer_k(k, cache, torch.tensor(slots, dtype=slot_dtype), scale_fmt=scale_fmt, provider=REF)

    q, s = quantize_fp8(k, block_size=128, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt)
    expect = torch.full_like(cache.buffer, POISON)
    for i, slot in enumerate(slots):
        if slot < 0:
            continue  # skipped token
        page, off = divmod(slot, page_size)
        # values region: token-major FP8 rows at the start of the page
        expect[page, off * 128:(off + 1) * 128] = q[i].view(torch.uint8)
        # scales region: one fp32 after all page_size*128 value bytes
        base = page_size * 128 + off * 4
        expect[page, base:base + 4] = s[i].view(torch.uint8)
    assert torch.equal(cache.buffer, expect)

    # gather reads back the same keys and scales
    live = torch.tensor([x for x in slots if x >= 0])
    kq, ks = cache.gather(live)
    keep = torch.tensor([x >= 0 for x in slots])
    assert torch.equal(kq.view(torch.uint8), q[keep].view(torch.uint8))
    assert torch.equal(ks, s[keep, 0])


def test_store_indexer_k_on_a_raw_buffer_and_views(fp8_dtype):
    buf = torch.zeros(2, 64 * 132, dtype=torch.uint8)
    k = torch.randn(5, 128)
    ops.store_indexer_k(k, buf, torch.tensor([64, 65, 127, 0, 1]), fp8_dtype=fp8_dtype, provider=REF)
    values, scales = indexer_cache_views(buf)
    assert values.shape == (2, 64, 128) and scales.shape == (2, 64) and scales.dtype == torch.float32
    q, s = quantize_fp8(k, fp8_dtype=fp8_dtype)
    assert torch.equal(values[1, 0].view(fp8_dtype).view(torch.uint8), q[0].view(torch.uint8))
    assert scales[1, 63] == s[2, 0] and scales[0, 1] == s[4, 0]
    kq, ks = indexer_cache_gather(buf, torch.tensor([127, 64]), fp8_dtype)
    assert torch.equal(kq.view(torch.uint8), q[[2, 0]].view(torch.uint8)) and torch.equal(ks, s[[2, 0], 0])
    with pytest.raises(ValueError, match="kv_cache"):
        indexer_cache_views(torch.zeros(2, 100, dtype=torch.uint8))


def test_fnuz_indexer_cache_never_holds_0x80():
    cache = IndexerKCache(1, page_size=8, fp8_dtype=torch.float8_e4m3fnuz)
    k = torch.randn(8, 128)
    k[:, :10] = -0.0
    k[:, 10:20] = -1e-12
    cache.store(k, torch.arange(8), provider=REF)
    values, _ = indexer_cache_views(cache.buffer)
    assert not (values == 0x80).any()


def test_cache_objects():
    assert IndexerKCache(2).bytes_per_token == 132 and IndexerKCache(2).buffer.shape == (2, 64 * 132)
    assert MLAKVCache(2).bytes_per_token == 1152 and MLAKVCache(2).buffer.shape == (2, 64, 1, 576)
    f = MLAKVCache(3, page_size=16, kv_dtype="fp8")
    assert f.bytes_per_token == 656 and f.buffer.shape == (3, 16, 1, 656) and f.num_pages == 3
    with pytest.raises(ValueError, match="num_pages"):
        IndexerKCache(0)
    with pytest.raises(ValueError, match="page_size"):
        MLAKVCache(1, page_size=0)
    with pytest.raises(ValueError, match="kv_dtype"):
        MLAKVCache(1, kv_dtype="fp16")
    with pytest.raises(TypeError, match="fp8_dtype"):
        IndexerKCache(1, fp8_dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# MLA latent cache
# ---------------------------------------------------------------------------------------------
def test_pack_mla_fp8_record_layout(fp8_dtype):
    c_kv = torch.randn(6, 512) * torch.tensor([0.01, 1.0, 30.0, 200.0]).repeat_interleave(128)
    k_rope = torch.randn(6, 64)
    rec = pack_mla_fp8(c_kv, k_rope, fp8_dtype)
    assert rec.shape == (6, MLA_FP8_RECORD_BYTES) == (6, 656) and rec.dtype == torch.uint8
    q, s = quantize_fp8(c_kv, block_size=128, fp8_dtype=fp8_dtype, scale_fmt="ue8m0")
    assert torch.equal(rec[:, :512], q.view(torch.uint8))  # bytes 0..511: FP8 latent
    sc = rec[:, 512:528].clone().view(torch.float32)  # bytes 512..527: 4 fp32 tile scales
    assert torch.equal(sc, s)
    m, _ = torch.frexp(sc)
    assert bool((m == 0.5).all())  # powers of two when written here
    # bytes 528..655: rope in bf16, not quantized
    assert torch.equal(rec[:, 528:].clone().view(torch.bfloat16), k_rope.to(torch.bfloat16))
    if fp8_dtype == torch.float8_e4m3fnuz:
        assert not (rec[:, :512] == 0x80).any()
    dec = unpack_mla_fp8(rec, fp8_dtype)
    for i in range(6):
        assert torch.equal(dec[i].double(), _decode_record(rec[i], fp8_dtype))
    # round trip within FP8 precision
    err = (dec[:, :512] - c_kv).abs()
    assert torch.all(err <= c_kv.abs() * 2.0**-4 + s.repeat_interleave(128, -1) * 2.0**-9)


@pytest.mark.parametrize("scales", [[0.3, 0.3, 0.3, 0.3], [0.3, 1.7, 3e-3, 5.5]])
def test_hand_written_record_scales_are_read_exactly(fp8_dtype, scales):
    """Scales that are not powers of two (e.g. written by another engine) must be used as
    stored by unpack, the cache's gather and sparse MLA (out = the single attended row)."""
    vals = (torch.randn(512) * 50).clamp(-200, 200).to(fp8_dtype)
    rope = torch.randn(64).to(torch.bfloat16)
    sc = torch.tensor(scales, dtype=torch.float32)
    rec = torch.cat([vals.view(torch.uint8), sc.view(torch.uint8), rope.view(torch.uint8)])
    assert rec.shape == (656,)
    want = torch.cat([(vals.float().view(4, 128) * sc.view(4, 1)).reshape(512), rope.float()])
    assert torch.equal(unpack_mla_fp8(rec.view(1, 656), fp8_dtype)[0], want)
    assert torch.equal(_decode_record(rec, fp8_dtype).float(), want)

    cache = MLAKVCache(2, page_size=4, kv_dtype="fp8", fp8_dtype=fp8_dtype)
    cache.buffer.view(-1, 656)[5] = rec
    assert torch.equal(cache.gather(torch.tensor([5]))[0], want)

    q = torch.randn(3, 16, 576, dtype=torch.bfloat16)
    idx = torch.tensor([[5, -1, 5, 99]], dtype=torch.int32).expand(3, 4).reshape(3, 1, 4).contiguous()
    out, _, lse = ops.sparse_mla_prefill(q, cache, idx, sm_scale=0.1352338, provider=REF)
    assert torch.equal(out.float(), want[:512].to(torch.bfloat16).float().expand(3, 16, 512))
    s = (q.double() @ want.double()) * 0.1352338
    assert torch.allclose(lse.double(), s + torch.log(torch.tensor(2.0, dtype=torch.float64)), atol=1e-4)
    # decode path, paged indices
    out_d, _ = ops.sparse_mla_decode(q.view(3, 1, 16, 576), cache, idx.view(3, 1, 4), sm_scale=0.1352338,
                                     provider=REF)
    assert torch.equal(out_d.view(3, 16, 512), out)


@pytest.mark.parametrize("src_dtype", [torch.bfloat16, torch.float32])
def test_store_mla_kv_bf16(src_dtype):
    cache = MLAKVCache(3, page_size=4)
    cache.buffer.fill_(float("nan"))
    slots = torch.tensor([7, -1, 0, 10, 4])  # slot 11 (where -1 would wrap) stays untouched
    c_kv, k_rope = torch.randn(5, 512, dtype=src_dtype), torch.randn(5, 64, dtype=src_dtype)
    ops.store_mla_kv(c_kv, k_rope, cache, slots, provider=REF)
    rows = cache.buffer.view(12, 576)
    for i, slot in enumerate(slots.tolist()):
        if slot >= 0:
            want = torch.cat([c_kv[i], k_rope[i]]).to(torch.bfloat16)
            assert torch.equal(rows[slot], want)
    written = {7, 0, 10, 4}
    for slot in range(12):
        if slot not in written:
            assert torch.isnan(rows[slot].float()).all()  # untouched (the -1 token skipped)


def test_store_mla_kv_fp8_records(fp8_dtype):
    cache = MLAKVCache(2, page_size=8, kv_dtype="fp8", fp8_dtype=fp8_dtype)
    cache.buffer.fill_(POISON)
    slots = torch.tensor([9, -1, 3, 14], dtype=torch.int32)  # not 15: -1 must not wrap there
    c_kv, k_rope = torch.randn(4, 512) * 3, torch.randn(4, 64)
    cache.store(c_kv, k_rope, slots, provider=REF)
    flat = cache.buffer.view(16, 656)
    packed = pack_mla_fp8(c_kv, k_rope, fp8_dtype)
    for i, slot in enumerate(slots.tolist()):
        if slot >= 0:
            assert torch.equal(flat[slot], packed[i])
    assert (flat[[0, 1, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15]] == POISON).all()
    dec = cache.gather(torch.tensor([9, 3, 14]))
    assert torch.allclose(dec[:, :512], c_kv[[0, 2, 3]], rtol=2.0**-4, atol=0.05)
    assert torch.equal(dec[:, 512:], k_rope[[0, 2, 3]].to(torch.bfloat16).float())


def test_mla_cache_rows_shapes():
    for shape in [(3, 4, 1, 576), (3, 4, 576), (12, 1, 576), (12, 576)]:
        r = mla_cache_rows(torch.zeros(shape, dtype=torch.bfloat16))
        assert r.shape == (12, 576)
    assert mla_cache_rows(torch.zeros(12, 1, 656, dtype=torch.uint8)).shape == (12, 656)
    with pytest.raises(ValueError, match="kv_cache"):
        mla_cache_rows(torch.zeros(12, 656, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="kv_cache"):
        mla_cache_rows(torch.zeros(12, 576, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------------
# page tables and slots
# ---------------------------------------------------------------------------------------------
def test_positions_to_slots_across_pages_and_shuffled():
    page_size = 4
    bt = torch.tensor([[5, 2, 7, 0], [1, 6, 3, 4]], dtype=torch.int32)
    pos = torch.tensor([[0, 3, 4, 7, 8, 15, -1], [11, 12, 1, -1, -1, 5, 4]], dtype=torch.int32)
    got = positions_to_slots(pos, bt, page_size)
    assert got.dtype == torch.int32
    want = [[bt[r, p // page_size].item() * page_size + p % page_size if p >= 0 else -1
             for p in pos[r].tolist()] for r in range(2)]
    assert got.tolist() == want
    assert got.tolist()[0][:4] == [20, 23, 8, 11]  # page boundary 3 -> 4 jumps to physical page 2


def test_positions_to_slots_large_pages_no_32bit_overflow():
    # Physical pages near the int32 slot limit: page * page_size must be computed in 64-bit
    # and land exactly (slot < 2^31, the int32 index contract).
    page_size = 64
    top = (2**31) // page_size - 1  # 33554431
    bt = torch.tensor([[top, 7, top - 1]], dtype=torch.int32)
    pos = torch.tensor([[0, 63, 64, 128, 191, -1]], dtype=torch.int64)
    got = positions_to_slots(pos, bt, page_size)[0].tolist()
    assert got == [top * 64, top * 64 + 63, 7 * 64, (top - 1) * 64, (top - 1) * 64 + 63, -1]
    assert max(got) == 2**31 - 1
    # byte offsets of those slots exceed 2^31 in every layout: they must be int64 math
    assert torch.tensor(got).long()[0] * MLA_FP8_RECORD_BYTES > 2**31


def test_cache_views_past_2gib_use_64bit_offsets():
    """Views of caches larger than 2 GiB (on the meta device: no memory, metadata only)."""
    num_pages = 2**20  # 2^20 * 64 * 132 B = 8.25 GiB
    buf = torch.empty(num_pages, 64 * 132, dtype=torch.uint8, device="meta")
    values, scales = indexer_cache_views(buf)
    assert values.shape == (num_pages, 64, 128) and values.stride() == (64 * 132, 128, 1)
    assert scales.shape == (num_pages, 64) and scales.stride() == (64 * 132 // 4, 1)
    last_v = values[num_pages - 1, 63]
    assert last_v.storage_offset() == (num_pages - 1) * 8448 + 63 * 128 > 2**31
    last_s = scales[num_pages - 1, 63]  # fp32 elements: byte offset / 4
    assert last_s.storage_offset() * 4 == (num_pages - 1) * 8448 + 64 * 128 + 63 * 4
    mla = torch.empty(2**16, 64, 1, 656, dtype=torch.uint8, device="meta")  # 2.56 GiB
    rows = mla_cache_rows(mla)
    assert rows.shape == (2**22, 656) and rows[2**22 - 1].storage_offset() == (2**22 - 1) * 656 > 2**31


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
def test_stores_skip_slots_past_the_cache(kv_dtype):
    """Slots >= num_pages * page_size are skipped like -1 (no write, no fault), by every store."""
    torch.manual_seed(3)
    mla = MLAKVCache(2, page_size=4, kv_dtype=kv_dtype)
    idx = IndexerKCache(2, page_size=4)
    before_mla, before_idx = mla.buffer.clone(), idx.buffer.clone()
    slots = torch.tensor([8, 9, 1 << 40, -1], dtype=torch.int64)  # 8 slots exist: none valid
    mla.store(torch.randn(4, 512), torch.randn(4, 64), slots, provider="reference")
    idx.store(torch.randn(4, 128), slots, provider="reference")
    assert torch.equal(mla.buffer, before_mla) and torch.equal(idx.buffer, before_idx)
    # a valid slot among them is still written
    mla.store(torch.randn(2, 512), torch.randn(2, 64), torch.tensor([9, 3]), provider="reference")
    assert not torch.equal(mla.buffer, before_mla)
