"""The DSA layer end to end on the reference provider: equal to dense causal MLA attention when
every context fits in top-k, indices inside each request and causal, short contexts padded with
-1, TP ranks summing to the full layer, shuffled pages, and only interface ops doing the work."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import rocm_dsa.backends as backends
from rocm_dsa.backends.reference import ReferenceProvider
from rocm_dsa.model.dense import dense_mla_reference
from rocm_dsa.model.layer import DSAAttentionLayer
from rocm_dsa.model.weights import random_layer_weights

TOL = {"bf16": 0.02, "fp8": 0.1}  # max per-row relative L2 error vs the fp32 dense reference (fp8:
# e4m3 keeps 3 mantissa bits, ~3-4% RMS error per latent value)


def _run(layer, caches, plan, seed=0, hidden=None):
    """plan: list of ("prefix", r, n) / ("prefill", [(r, n), ...]) / ("decode", reqs, next_n).
    Returns per-request inputs xs[r] [L, hidden], outputs {(r, pos): row} and the traces."""
    hidden = hidden or layer.cfg.hidden_size
    g = torch.Generator().manual_seed(seed)
    xs: dict[int, list[torch.Tensor]] = {}
    outs: dict[tuple[int, int], torch.Tensor] = {}
    traces = []
    for step in plan:
        if step[0] == "prefix":
            _, r, n = step
            x = torch.randn(n, hidden, generator=g)
            xs.setdefault(r, []).append(x)
            traces.append(layer.write_prefix(x, caches, r))
            continue
        if step[0] == "prefill":
            pairs = step[1]
            x = torch.randn(sum(n for _, n in pairs), hidden, generator=g)
            out, tr = layer.prefill(x, caches, [r for r, _ in pairs], [n for _, n in pairs])
        else:
            _, reqs, n_next = step
            x = torch.randn(len(reqs) * n_next, hidden, generator=g)
            out, tr = layer.decode(x, caches, reqs, next_n=n_next)
        traces.append(tr)
        off = 0
        for r, m, in zip(tr.reqs, tr.lens):
            xs.setdefault(r, []).append(x[off:off + m])
            for i in range(m):
                outs[(r, int(tr.positions[off + i]))] = out[off + i]
            off += m
    return {r: torch.cat(v) for r, v in xs.items()}, outs, traces


PLAN = [
    ("prefix", 2, 30),                        # request 2: a cached prefix (prefix-cache hit)
    ("prefill", [(0, 40), (1, 37), (2, 20), (3, 25)]),
    ("prefill", [(3, 26)]),                   # request 3: chunked prefill, second chunk
    ("decode", [0, 1, 2, 3], 1),
    ("decode", [0, 1, 2, 3], 1),
    ("decode", [0, 1, 2, 3], 2),              # MTP: two tokens per request
]


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
def test_equals_dense_when_every_context_fits_topk(small_cfg, kv_dtype, fp8_dtype):
    layer = DSAAttentionLayer.random(small_cfg, seed=0, topk=128)
    caches = layer.make_caches(16, kv_dtype=kv_dtype, fp8_dtype=fp8_dtype)
    for _ in range(4):
        caches.add_request()
    xs, outs, traces = _run(layer, caches, PLAN)
    assert max(caches.seq_lens) <= 128
    for r, x in xs.items():
        rows = torch.tensor(sorted(p for (rr, p) in outs if rr == r))
        ref = dense_mla_reference(small_cfg, layer.w, x, rows)
        got = torch.stack([outs[(r, int(p))] for p in rows])
        err = (got - ref).norm(dim=-1) / ref.norm(dim=-1)
        assert float(err.max()) < TOL[kv_dtype], (r, float(err.max()))
        assert float(err.mean()) < TOL[kv_dtype] / 2, (r, float(err.mean()))
    # the top-k of a context that fits is every key, then -1
    for tr in traces:
        if tr.mode == "prefill":
            valid = (tr.topk >= 0).sum(1)
            assert torch.equal(valid.long(), tr.positions + 1)


def test_indices_inside_each_request_and_causal(small_cfg):
    layer = DSAAttentionLayer.random(small_cfg, seed=1, topk=16)
    caches = layer.make_caches(16)
    for _ in range(4):
        caches.add_request()
    _, _, traces = _run(layer, caches, PLAN, seed=1)
    for tr in traces:
        if tr.mode == "prefix":
            continue
        off = 0
        for r, m in zip(tr.reqs, tr.lens):
            for i in range(m):
                t = off + i
                pos = int(tr.positions[t])
                j = i if tr.mode == "decode" else 0
                last = pos if tr.mode == "prefill" else caches.seq_lens[r] - m + j  # inclusive
                own = set(caches.slots(r, torch.arange(last + 1)).tolist())
                sl = tr.topk_slots[t]
                ok = sl[sl >= 0].tolist()
                assert len(ok) == min(16, last + 1)
                assert set(ok) <= own, (r, pos)  # inside the request, causal
                assert len(set(ok)) == len(ok)
                if tr.mode == "prefill":
                    p = tr.topk[t]
                    assert int(p.max()) <= pos and bool((p[p < 0] == -1).all())
            off += m


def test_short_context_pads_with_minus_one(small_cfg):
    layer = DSAAttentionLayer.random(small_cfg, seed=2, topk=64)
    caches = layer.make_caches(4)
    r = caches.add_request()
    _, tr = layer.prefill(torch.randn(40, small_cfg.hidden_size), caches, [r], [40])
    assert tr.topk.shape == (40, 64)
    for t in range(40):
        row = tr.topk[t]
        assert sorted(row[: t + 1].tolist()) == list(range(t + 1))
        assert bool((row[t + 1:] == -1).all())


def test_tp_ranks_sum_to_the_full_layer(small_cfg):
    x = torch.randn(33, small_cfg.hidden_size)
    outs = []
    for tp, rank in ((1, 0), (2, 0), (2, 1)):
        w = random_layer_weights(small_cfg, seed=4, tp_size=tp, tp_rank=rank)
        layer = DSAAttentionLayer(small_cfg, w, topk=16)
        assert layer.local_heads == small_cfg.num_heads // tp
        caches = layer.make_caches(4)
        r = caches.add_request()
        out, tr = layer.prefill(x, caches, [r], [33])
        assert tr.q_fp8.shape[1] == small_cfg.index_n_heads  # the indexer is not split across ranks
        outs.append((out, tr.topk))
    assert torch.equal(outs[1][1], outs[0][1]) and torch.equal(outs[2][1], outs[0][1])
    assert torch.allclose(outs[1][0] + outs[2][0], outs[0][0], atol=1e-4, rtol=1e-4)


def test_shuffled_pages_give_the_same_result(small_cfg):
    layer = DSAAttentionLayer.random(small_cfg, seed=5, topk=32)
    res = []
    for seed in (None, 11):
        caches = layer.make_caches(12, shuffle_seed=seed)
        for _ in range(2):
            caches.add_request()
        _, outs, _ = _run(layer, caches, [("prefill", [(0, 150), (1, 70)]), ("decode", [0, 1], 1)], seed=3)
        res.append((caches.block_table([0, 1]), outs))
    (bt0, o0), (bt1, o1) = res
    assert bt0[0, :3].tolist() == [0, 1, 2] and not torch.equal(bt0, bt1)
    for key in o0:
        assert torch.allclose(o0[key], o1[key], atol=1e-5), key


class _Spy(ReferenceProvider):
    name = "spy"

    def __init__(self):
        self.calls: list[str] = []


for _op in backends.OPS:
    def _wrap(op=_op):
        def method(self, *args):
            self.calls.append(op)
            return getattr(ReferenceProvider, op)(self, *args)
        return method
    setattr(_Spy, _op, _wrap())


@pytest.mark.parametrize("strict", [True, False])
def test_every_attention_step_goes_through_the_interface(small_cfg, monkeypatch, strict):
    spy = _Spy()
    mod = types.ModuleType("rocm_dsa_test_spy_provider")
    mod.PROVIDER = spy
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(backends.PROVIDER_MODULES, "spy", mod.__name__)
    monkeypatch.setattr(backends, "_loaded", dict(backends._loaded))
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    layer = DSAAttentionLayer.random(small_cfg, seed=6, topk=16, provider="spy", strict=strict)
    caches = layer.make_caches(4)
    r = caches.add_request()
    layer.prefill(torch.randn(20, small_cfg.hidden_size), caches, [r], [20])
    layer.decode(torch.randn(1, small_cfg.hidden_size), caches, [r])
    assert spy.calls == ["store_indexer_k", "store_mla_kv", "indexer_topk", "sparse_mla_prefill",
                         "store_indexer_k", "store_mla_kv", "indexer_topk_paged", "sparse_mla_decode"]


def test_bad_inputs(small_cfg):
    layer = DSAAttentionLayer.random(small_cfg, seed=0, topk=16)
    caches = layer.make_caches(2)
    r = caches.add_request()
    h = small_cfg.hidden_size
    with pytest.raises(ValueError, match="x: expected shape"):
        layer.prefill(torch.randn(5, h + 1), caches, [r], [5])
    with pytest.raises(ValueError, match="reqs/lens"):
        layer.prefill(torch.randn(5, h), caches, [r, r], [2, 3])
    with pytest.raises(ValueError, match="prefilled"):
        layer.decode(torch.randn(1, h), caches, [r])
    with pytest.raises(ValueError, match="next_n"):
        layer.decode(torch.randn(1, h), caches, [r], next_n=0)
    with pytest.raises(RuntimeError, match="out of pages"):
        layer.prefill(torch.randn(200, h), caches, [r], [200])
    with pytest.raises(ValueError, match="q_b_proj"):
        DSAAttentionLayer(small_cfg.replace(num_heads=8), random_layer_weights(small_cfg))
    with pytest.raises(ValueError, match="tp_size"):
        random_layer_weights(small_cfg, tp_size=3)
    with pytest.raises(ValueError, match="tp_size/tp_rank"):
        DSAAttentionLayer(small_cfg, random_layer_weights(small_cfg, tp_size=2, tp_rank=1), tp_size=2, tp_rank=0)
