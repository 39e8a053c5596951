"""``nsa-rocm`` backend built from SGLang 0.5.23's own classes on a CPU (real DSA KV pool, real
batch metadata), checked against the reference provider on small batches.

Expected values are computed independently of the backend's plumbing: latents laid out densely
in request/position order (bf16 rows, or 656-byte records from the reference codec), indices
offset by hand, then the reference op. The backend under test stores into SGLang's pool at
scattered slots and maps top-k positions through SGLang's page table.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.cache import pack_mla_fp8
from rocm_dsa.fp8 import quantize_fp8
from rocm_dsa.testing import assert_close, assert_topk_equal

SM_SCALE = 0.1352338
HEADS = 4
TOPK = 16


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _layer():
    return SimpleNamespace(layer_id=0, tp_q_head_num=HEADS, v_head_dim=512, head_dim=576, scaling=SM_SCALE,
                           is_cross_attention=False, logit_cap=0.0)


def _batch(runner, mode, prefix, ext, gen):
    """A ForwardBatch for requests with ``prefix`` cached tokens and ``ext`` new ones, each
    request on randomly chosen 64-token pages (SGLang's paged allocator: slot = page * 64 +
    position % 64; page 0 is the padding page); returns (forward_batch, slots per request)."""
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch

    rtp = runner.req_to_token_pool
    page = runner.page_size
    seq = [p + e for p, e in zip(prefix, ext)]
    num_pages = runner.token_to_kv_pool.size // page
    pages = (torch.randperm(num_pages, generator=gen) + 1).tolist()
    req_idx = torch.arange(1, len(seq) + 1)
    slots = []
    for r, s in zip(req_idx.tolist(), seq):
        pos = torch.arange(s)
        mine = torch.tensor([pages.pop() for _ in range((s + page - 1) // page)], dtype=torch.long)
        sl = mine[pos // page] * page + pos % page
        rtp.req_to_token[r, :s] = sl.to(torch.int32)
        slots.append(sl)
    out_loc = torch.cat([sl[p:] for sl, p in zip(slots, prefix)])
    fb = ForwardBatch(forward_mode=mode, batch_size=len(seq), input_ids=torch.zeros(sum(ext), dtype=torch.long),
                      req_pool_indices=req_idx, seq_lens=torch.tensor(seq), out_cache_loc=out_loc,
                      seq_lens_sum=sum(seq))
    fb.seq_lens_cpu = torch.tensor(seq)
    if not mode.is_decode():
        fb.extend_seq_lens_cpu = list(ext)
        fb.extend_seq_lens = torch.tensor(ext)
        fb.extend_prefix_lens_cpu = list(prefix)
        fb.extend_prefix_lens = torch.tensor(prefix)
        fb.extend_num_tokens = sum(ext)
    return fb, slots


def _dense(c_kv, rope, kv_format, fp8_dtype):
    """Latent rows [N, 1, W] in request/position order, as the reference reads them."""
    if kv_format == "bf16":
        return torch.cat([c_kv, rope], -1).to(torch.bfloat16).unsqueeze(1).contiguous()
    return pack_mla_fp8(c_kv, rope, fp8_dtype).unsqueeze(1).contiguous()


def _random_topk(visible, k, gen):
    """[R, k] request-local positions: a random subset of 0..visible[r]-1, -1 padded."""
    out = torch.full((len(visible), k), -1, dtype=torch.int32)
    for r, v in enumerate(visible):
        n = min(v, k - 2) if v > 3 else v          # leave some -1 padding in most rows
        out[r, :n] = torch.randperm(v, generator=gen)[:n].to(torch.int32)
    return out


KV_CASES = [
    pytest.param(torch.bfloat16, id="bf16"),
    pytest.param(torch.float8_e4m3fn, id="fp8-e4m3fn"),
    pytest.param(torch.float8_e4m3fnuz, id="fp8-e4m3fnuz-gfx942"),
]


@pytest.fixture
def build(make_runner, no_cuda_capability):
    """``build(kv_dtype, **runner_kw)`` -> (RocmDSABackend, runner); the latent cache is
    poisoned (NaN) so a read from any slot the backend did not write shows. Slot 0 (SGLang's
    padding slot, never handed to a request here) stays zero: invalid (-1) indices read it."""
    from rocm_dsa.sglang.backend import RocmDSABackend

    def _build(kv_dtype=torch.bfloat16, **kw):
        runner = make_runner(kv_dtype=kv_dtype, heads=HEADS, **kw)
        backend = RocmDSABackend(runner)
        for buf in runner.token_to_kv_pool.kv_buffer:
            if buf.dtype == torch.bfloat16:
                buf.fill_(float("nan"))
            else:
                buf.fill_(0xFF)      # fp32 scale bytes 0xFFFFFFFF = NaN
            buf[0].zero_()
        return backend, runner

    return _build


# ---------------------------------------------------------------------------------------------
# construction
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kv_dtype", KV_CASES)
def test_construct_and_kv_layout(build, kv_dtype):
    backend, runner = build(kv_dtype)
    pool = runner.token_to_kv_pool
    assert backend.use_fused_topk is False and backend.use_mha is False
    if kv_dtype == torch.bfloat16:
        assert (backend.kv_format, backend.kv_fp8_dtype) == ("bf16", None)
        assert backend.latent_buffer(0).shape == (pool.size + pool.page_size, 1, 576)
    else:
        assert (backend.kv_format, backend.kv_fp8_dtype) == ("fp8", kv_dtype)
        buf = backend.latent_buffer(0)
        assert buf.dtype == torch.uint8 and buf.shape == (pool.size + pool.page_size, 1, 656)


def test_fp8_records_replace_pools_writer(build):
    """gfx942: SGLang built raw e4m3fnuz rows; the backend switched the pool to 656-byte records
    and any writer going through the pool now produces rocm-dsa's record bytes."""
    backend, runner = build(torch.float8_e4m3fnuz)
    pool = runner.token_to_kv_pool
    assert pool.kv_cache_dim == 656 and pool.kv_buffer[0].dtype == torch.uint8
    n = 5
    c_kv, rope = torch.randn(n, 512), torch.randn(n, 1, 64)
    loc = torch.tensor([70, 3, 200, 64, 511])
    pool.set_mla_kv_buffer(_layer(), loc, c_kv.to(torch.bfloat16), rope.to(torch.bfloat16))
    got = pool.kv_buffer[0].view(-1, 656)[loc]
    want = pack_mla_fp8(c_kv.to(torch.bfloat16).float(), rope.reshape(n, 64).to(torch.bfloat16).float(),
                        torch.float8_e4m3fnuz)
    assert torch.equal(got, want)


def test_unsupported_configs_refused(make_runner, no_cuda_capability):
    from rocm_dsa.sglang.backend import RocmDSABackend

    with pytest.raises(NotImplementedError, match="learnable attention sinks"):
        RocmDSABackend(make_runner(learnable_sink=True))


def test_multistep_draft_backend_matches_sglang(make_runner, no_cuda_capability):
    from sglang.srt.layers.attention.dsa_backend import DeepseekSparseAttnMultiStepBackend

    from rocm_dsa.sglang.backend import RocmDSABackend, RocmDSAMultiStepBackend

    runner = make_runner()
    ours = RocmDSAMultiStepBackend(runner, topk=1, speculative_num_steps=3)
    theirs = DeepseekSparseAttnMultiStepBackend(runner, topk=1, speculative_num_steps=3)
    assert set(vars(ours)) == set(vars(theirs))
    assert len(ours.attn_backends) == 2
    assert all(type(b) is RocmDSABackend for b in ours.attn_backends)
    assert [b.speculative_step_id for b in ours.attn_backends] == [0, 1]


# ---------------------------------------------------------------------------------------------
# sparse MLA through the real metadata
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kv_dtype", KV_CASES)
def test_forward_extend_matches_reference(build, kv_dtype):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(1)
    backend, runner = build(kv_dtype)
    prefix, ext = [70, 0, 9], [3, 5, 1]
    fb, slots = _batch(runner, ForwardMode.EXTEND, prefix, ext, gen)
    backend.init_forward_metadata(fb)

    seq = [p + e for p, e in zip(prefix, ext)]
    c_kv = [torch.randn(s, 512, generator=gen) for s in seq]
    rope = [torch.randn(s, 64, generator=gen) for s in seq]
    # cached prefix, written the way SGLang's model would have in earlier steps
    for b, p in enumerate(prefix):
        if p:
            backend.store_latent(0, slots[b][:p], c_kv[b][:p].to(torch.bfloat16), rope[b][:p].to(torch.bfloat16))
    t = sum(ext)
    k_new = torch.cat([c[p:] for c, p in zip(c_kv, prefix)]).to(torch.bfloat16)
    rope_new = torch.cat([r[p:] for r, p in zip(rope, prefix)]).to(torch.bfloat16).unsqueeze(1)
    q_nope = torch.randn(t, HEADS * 512, generator=gen).to(torch.bfloat16)
    q_rope = torch.randn(t, HEADS, 64, generator=gen).to(torch.bfloat16)
    visible = [p + j + 1 for p, e in zip(prefix, ext) for j in range(e)]
    topk = _random_topk(visible, TOPK, gen)

    out = backend.forward_extend(q_nope, k_new, k_new, _layer(), fb, save_kv_cache=True, q_rope=q_rope,
                                 k_rope=rope_new, topk_indices=topk)

    fmt, fp8 = backend.kv_format, backend.kv_fp8_dtype
    dense = _dense(torch.cat(c_kv).to(torch.bfloat16).float(), torch.cat(rope).to(torch.bfloat16).float(), fmt, fp8)
    offs = torch.tensor([0] + seq[:-1]).cumsum(0)
    row_req = torch.repeat_interleave(torch.arange(len(ext)), torch.tensor(ext))
    idx = torch.where(topk >= 0, topk + offs[row_req].unsqueeze(1).to(torch.int32), torch.full_like(topk, -1))
    q_all = torch.cat([q_nope.view(t, HEADS, 512), q_rope], -1).contiguous()
    want, _, _ = ops.sparse_mla_prefill(q_all, dense, idx.unsqueeze(1).contiguous(), sm_scale=SM_SCALE,
                                        fp8_dtype=fp8, provider="reference")
    assert out.shape == (t, HEADS, 512)
    assert torch.isfinite(out.float()).all()
    assert_close(out, want, name="forward_extend")


@pytest.mark.parametrize("kv_dtype", KV_CASES)
def test_forward_decode_matches_reference(build, kv_dtype):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(2)
    backend, runner = build(kv_dtype)
    prefix = [0, 39, 129]
    fb, slots = _batch(runner, ForwardMode.DECODE, prefix, [1, 1, 1], gen)
    backend.init_forward_metadata(fb)

    seq = [p + 1 for p in prefix]
    c_kv = [torch.randn(s, 512, generator=gen) for s in seq]
    rope = [torch.randn(s, 64, generator=gen) for s in seq]
    for b, p in enumerate(prefix):
        if p:
            backend.store_latent(0, slots[b][:p], c_kv[b][:p].to(torch.bfloat16), rope[b][:p].to(torch.bfloat16))
    bsz = len(seq)
    k_new = torch.stack([c[-1] for c in c_kv]).to(torch.bfloat16)
    rope_new = torch.stack([r[-1] for r in rope]).to(torch.bfloat16).unsqueeze(1)
    q_all = torch.randn(bsz, HEADS, 576, generator=gen).to(torch.bfloat16)
    topk = _random_topk(seq, TOPK, gen)

    # concatenated-q calling convention (q_rope=None), as ROCm's fused rope path passes it
    out = backend.forward_decode(q_all.reshape(bsz, HEADS * 576), k_new, k_new, _layer(), fb, save_kv_cache=True,
                                 q_rope=None, k_rope=rope_new, topk_indices=topk)

    fmt, fp8 = backend.kv_format, backend.kv_fp8_dtype
    dense = _dense(torch.cat(c_kv).to(torch.bfloat16).float(), torch.cat(rope).to(torch.bfloat16).float(), fmt, fp8)
    offs = torch.tensor([0] + seq[:-1]).cumsum(0)
    idx = torch.where(topk >= 0, topk + offs.unsqueeze(1).to(torch.int32), torch.full_like(topk, -1))
    want, _, _ = ops.sparse_mla_prefill(q_all, dense, idx.unsqueeze(1).contiguous(), sm_scale=SM_SCALE,
                                        fp8_dtype=fp8, provider="reference")
    assert out.shape == (bsz, HEADS, 512)
    assert_close(out, want, name="forward_decode")


def test_all_invalid_row_gives_zero_not_nan(build):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(3)
    backend, runner = build(torch.bfloat16)
    fb, _ = _batch(runner, ForwardMode.DECODE, [5, 6], [1, 1], gen)
    backend.init_forward_metadata(fb)
    q = torch.randn(2, HEADS * 576, generator=gen).to(torch.bfloat16)
    k = torch.randn(2, 512, generator=gen).to(torch.bfloat16)
    rope = torch.randn(2, 1, 64, generator=gen).to(torch.bfloat16)
    topk = torch.full((2, TOPK), -1, dtype=torch.int32)
    topk[1, 0] = 6   # the new token itself
    out = backend.forward_decode(q, k, k, _layer(), fb, q_rope=None, k_rope=rope, topk_indices=topk)
    assert torch.equal(out[0].float(), torch.zeros(HEADS, 512))
    assert torch.isfinite(out.float()).all() and out[1].abs().sum() > 0


def test_garbage_in_padding_slot_does_not_leak(build):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(8)
    backend, runner = build(torch.bfloat16)
    runner.token_to_kv_pool.kv_buffer[0][0].fill_(float("nan"))   # padded tokens write slot 0
    fb, _ = _batch(runner, ForwardMode.DECODE, [5], [1], gen)
    backend.init_forward_metadata(fb)
    q = torch.randn(1, HEADS * 576, generator=gen).to(torch.bfloat16)
    k = torch.randn(1, 512, generator=gen).to(torch.bfloat16)
    rope = torch.randn(1, 1, 64, generator=gen).to(torch.bfloat16)
    topk = torch.full((1, TOPK), -1, dtype=torch.int32)
    topk[0, 0] = 5
    out = backend.forward_decode(q, k, k, _layer(), fb, q_rope=None, k_rope=rope, topk_indices=topk)
    assert torch.isfinite(out.float()).all()


# ---------------------------------------------------------------------------------------------
# indexer: key store, top-k transform, prefill (ragged) and decode (paged) logits + top-k
# ---------------------------------------------------------------------------------------------
def _fake_indexer(k):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    return SimpleNamespace(index_topk=k, scale_fmt="ue8m0", num_init_tokens=0, num_local_tokens=0,
                           _get_index_k_read_buffer=Indexer._get_index_k_read_buffer,
                           _mask_init_and_local_tokens=lambda *a: Indexer._mask_init_and_local_tokens(
                               SimpleNamespace(num_init_tokens=0, num_local_tokens=0), *a))


def _store_keys(backend, fb, slots, keys):
    """Write indexer keys of every request through the hooked Indexer._store_index_k_cache."""
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor.forward_context import ForwardContext, forward_context

    with forward_context(ForwardContext(attn_backend=backend)):
        for sl, kk in zip(slots, keys):
            fb.out_cache_loc = sl
            Indexer._store_index_k_cache(_fake_indexer(TOPK), fb, 0, kk.to(torch.bfloat16))


def test_index_key_store_hook_writes_reference_bytes(build):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(4)
    backend, runner = build()
    fb, slots = _batch(runner, ForwardMode.DECODE, [100], [1], gen)
    keys = torch.randn(101, 128, generator=gen)
    pool = runner.token_to_kv_pool
    buf = pool.get_index_k_with_scale_buffer(0)
    buf.fill_(0xFF)
    expected = buf.clone()
    ops.store_indexer_k(keys.to(torch.bfloat16), expected, slots[0], fp8_dtype=torch.float8_e4m3fn,
                        provider="reference")
    _store_keys(backend, fb, slots, [keys])
    assert torch.equal(pool.get_index_k_with_scale_buffer(0), expected)


def test_topk_transform_is_rocm_dsa_topk(build):
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    gen = torch.Generator().manual_seed(5)
    backend, runner = build()
    fb, _ = _batch(runner, ForwardMode.DECODE, [10, 30], [1, 1], gen)
    backend.init_forward_metadata(fb)
    md = backend.get_indexer_metadata(0, fb)
    assert md.force_unfused_topk
    logits = torch.randn(2, 40, generator=gen)
    ks = torch.tensor([3, 0], dtype=torch.int32)
    lengths = torch.tensor([20, 31], dtype=torch.int32)
    got = md.topk_transform(logits, TOPK, ks=ks, ke_offset=lengths)
    want = ops.topk_indices(logits, ks, ks + lengths, k=TOPK, provider="reference")
    assert_topk_equal(got, want)
    got = md.topk_transform(logits[:, :31].contiguous(), TOPK)   # decode: lengths from the metadata
    want = ops.topk_indices(logits[:, :31].contiguous(), torch.zeros(2, dtype=torch.int32),
                            torch.tensor([11, 31], dtype=torch.int32), k=TOPK, provider="reference")
    assert_topk_equal(got, want)


def _expected_topk(q_fp8, weights, keys_per_req, rows_req, rows_visible, k):
    """Reference top-k from keys quantized in position order (independent of the cache)."""
    kq, ks_list = [], []
    for kk in keys_per_req:
        q, s = quantize_fp8(kk.to(torch.bfloat16).float(), block_size=128, fp8_dtype=torch.float8_e4m3fn)
        kq.append(q)
        ks_list.append(s.reshape(-1))
    k_fp8, k_scale = torch.cat(kq), torch.cat(ks_list)
    offs = torch.tensor([0] + [len(x) for x in keys_per_req][:-1]).cumsum(0)
    starts = offs[rows_req].to(torch.int32)
    ends = (starts + torch.tensor(rows_visible, dtype=torch.int32)).to(torch.int32)
    return ops.indexer_topk(q_fp8, k_fp8, k_scale, weights, starts, ends, k=k, provider="reference")


def test_ragged_indexer_hook_matches_reference(build):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor.forward_batch_info import ForwardMode
    from sglang.srt.model_executor.forward_context import ForwardContext, forward_context

    gen = torch.Generator().manual_seed(6)
    backend, runner = build()
    prefix, ext = [70, 0], [3, 20]
    fb, slots = _batch(runner, ForwardMode.EXTEND, prefix, ext, gen)
    seq = [p + e for p, e in zip(prefix, ext)]
    keys = [torch.randn(s, 128, generator=gen) for s in seq]
    _store_keys(backend, fb, slots, keys)
    fb.out_cache_loc = torch.cat([sl[p:] for sl, p in zip(slots, prefix)])
    backend.init_forward_metadata(fb)
    t = sum(ext)
    q_fp8 = (torch.randn(t, 64, 128, generator=gen) * 8).to(torch.float8_e4m3fn)
    weights = torch.randn(t, 64, 1, generator=gen) * 0.01
    with forward_context(ForwardContext(attn_backend=backend)):
        md = backend.get_indexer_metadata(0, fb)
        got = Indexer._get_topk_ragged(_fake_indexer(TOPK), False, fb, 0, q_fp8, weights, md)
    rows_req = torch.repeat_interleave(torch.arange(2), torch.tensor(ext))
    visible = [p + j + 1 for p, e in zip(prefix, ext) for j in range(e)]
    want = _expected_topk(q_fp8, weights.squeeze(-1), keys, rows_req, visible, TOPK)
    assert_topk_equal(got, want)


def test_paged_indexer_hook_matches_reference(build):
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer
    from sglang.srt.model_executor.forward_batch_info import ForwardMode
    from sglang.srt.model_executor.forward_context import ForwardContext, forward_context

    gen = torch.Generator().manual_seed(7)
    backend, runner = build()
    prefix = [5, 63, 140]
    fb, slots = _batch(runner, ForwardMode.DECODE, prefix, [1, 1, 1], gen)
    seq = [p + 1 for p in prefix]
    keys = [torch.randn(s, 128, generator=gen) for s in seq]
    _store_keys(backend, fb, slots, keys)
    fb.out_cache_loc = torch.stack([sl[-1] for sl in slots])
    backend.init_forward_metadata(fb)
    q_fp8 = (torch.randn(3, 64, 128, generator=gen) * 8).to(torch.float8_e4m3fn)
    weights = torch.randn(3, 64, 1, generator=gen) * 0.01
    with forward_context(ForwardContext(attn_backend=backend)):
        md = backend.get_indexer_metadata(0, fb)
        got = Indexer._get_topk_paged(_fake_indexer(TOPK), fb, 0, q_fp8, weights, md)
    want = _expected_topk(q_fp8, weights.squeeze(-1), keys, torch.arange(3), seq, TOPK)
    assert_topk_equal(got, want)


def test_hooks_leave_other_backends_alone(build):
    """SGLang's own metadata (backend "dsa") still takes SGLang's path."""
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    from rocm_dsa.sglang import backend as mod

    build()
    calls = []
    sentinel = object()
    original = Indexer._get_topk_paged.__wrapped__
    try:
        Indexer._get_topk_paged = mod._make_method(mod._get_topk_paged,
                                                   lambda *a, **k: calls.append(a) or sentinel)
        assert Indexer._get_topk_paged(SimpleNamespace(), None, 0, None, None, SimpleNamespace()) is sentinel
        assert len(calls) == 1
    finally:
        Indexer._get_topk_paged = mod._make_method(mod._get_topk_paged, original)


