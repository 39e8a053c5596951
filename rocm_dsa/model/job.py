"""The main job of ``rocm-dsa run``: one DSA layer over a batch of requests (chunked prefill, then
decode steps), every stage checked against the reference provider and the whole layer against
dense causal attention.

Checks (each a row of :class:`JobReport`):

* cache stores: the layer's cache bytes for every written slot against the same keys / latents
  stored by the reference provider into fresh caches (FP8 values compared dequantized).
* indexer + top-k (prefill and decode): the provider's logits against the reference's
  (``indexer_logits`` / ``indexer_logits_paged``), and the top-k the layer used against the
  reference's exact top-k of the reference logits: overlap, and a tie-tolerant validity test (every
  selected key scores within a small tolerance of the k-th best). When the stage ran on the
  reference provider, this compares the fused top-k with the unfused one (logits, then
  ``topk_indices``) — two different code paths.
* sparse MLA (prefill and decode): provider output and LSE against the reference on the same
  caches and indices (skipped when the stage ran on the reference: it would be an identity).
* dense: the layer's output against :func:`rocm_dsa.model.dense.dense_mla_reference`. Rows whose
  context holds <= top-k keys must match (sparse attention then sees every key); rows with longer
  contexts are compared on a sample and reported as information, not checked.

Query rows of long prefill requests can be sampled for the stage checks (``check_rows``) so that
big CPU runs stay affordable; the sampled rows are listed in the report's notes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import torch

from .. import ops
from ..backends import prefer, record_selections
from ..cache import indexer_cache_views, mla_cache_rows, positions_to_slots
from ..config import DSAConfig, deepseek_v32
from ..testing import compare, topk_overlap
from .dense import dense_mla_reference
from .layer import DSAAttentionLayer, StepTrace
from .paging import PagedKVCaches
from .weights import load_layer_weights, random_layer_weights

__all__ = ["JobOptions", "JobReport", "StageRow", "run_job", "TOLERANCES"]

log = logging.getLogger("rocm_dsa")

#: pass thresholds: per-row relative L2 error of the layer vs dense attention, by KV cache format
DENSE_TOL = {"bf16": 0.03, "fp8": 0.1}
#: stage tolerances (relative to the largest reference magnitude of the compared tensor)
# logits / topk_score: relative to the row's largest |logit|. FP8 matrix units accumulate with
# reduced precision (H200: 1.3e-4 relative L2, max 2.7e-4 against the fp32 reference, the same
# for aiter's kernel), so a top-k may differ from the reference's only among near-ties.
TOLERANCES = {"logits": 2e-3, "topk_score": 2e-3, "mla_out": 2e-2, "lse": 1e-3, "fp8_store": 0.07,
              "bf16_store": 1e-2}


@dataclasses.dataclass
class JobOptions:
    """Inputs of :func:`run_job` (the ``rocm-dsa run`` options)."""

    lengths: list[int] = dataclasses.field(default_factory=lambda: [1500, 2600, 40])
    decode_steps: int = 4
    next_n: int = 1
    provider: str | None = None
    tp_size: int = 8
    tp_rank: int = 0
    #: TP-local MLA heads; when set, overrides tp_size (= model heads // heads)
    heads: int | None = None
    kv_cache: str = "bf16"
    checkpoint: Path | None = None
    layer: int = 0
    config: Path | None = None
    seed: int = 0
    topk: int | None = None
    chunk: int = 2048
    extend: int = 256
    dtype: str = "fp32"
    device: str = "cpu"
    dense_rows: int = 32
    check_rows: int = 0


@dataclasses.dataclass
class StageRow:
    """One line of the report. ``status``: "pass", "FAIL", "info" or "-" (not checked)."""

    stage: str
    provider: str
    seconds: float | None = None
    tokens: int | None = None
    max_error: float | None = None
    topk_overlap: float | None = None
    bytes_per_token: int | None = None
    status: str = "-"
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        if not self.seconds or not self.tokens:
            return None
        return self.tokens / self.seconds


@dataclasses.dataclass
class JobReport:
    """What :func:`run_job` found: settings, stage rows, overall verdict."""

    settings: dict
    rows: list[StageRow]
    wall_seconds: float
    notes: list[str]

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.rows)

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            d = dataclasses.asdict(r)
            d["tokens_per_s"] = r.tokens_per_s
            rows.append(d)
        return {"ok": self.ok, "settings": self.settings, "stages": rows, "wall_seconds": self.wall_seconds,
                "notes": self.notes}


# ---------------------------------------------------------------------------------------------
# provider bookkeeping
# ---------------------------------------------------------------------------------------------
def _provider_label(op: str, requested: str | None, chosen: dict[str, str]) -> str:
    """The provider that ran ``op`` (as recorded by ``select``), "pref→used" after a fallback."""
    name = chosen.get(op, "-")
    if requested and name not in ("-", requested):
        return f"{requested}→{name}"
    return name


def _is_reference(label: str) -> bool:
    return label.split("→")[-1] == "reference"


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _sample_rows(n: int, limit: int) -> torch.Tensor:
    """All of 0..n-1, or ``limit`` of them spread evenly (first and last included)."""
    if limit <= 0 or n <= limit:
        return torch.arange(n)
    return torch.linspace(0, n - 1, limit).round().long().unique()


def _rel_max(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a - e| over finite entries / max |e| (0 when e is all zero); inf on a non-finite mismatch."""
    d = compare(actual, expected)
    if d.nonfinite_mismatch:
        return math.inf
    e = expected.detach().double()
    e = e[torch.isfinite(e)]
    scale = float(e.abs().max()) if e.numel() else 0.0
    return d.max_abs / scale if scale > 0 else d.max_abs


def _topk_valid(sel: torch.Tensor, logits: torch.Tensor, counts: torch.Tensor, k: int, tol: float) -> bool:
    """Is each row of ``sel`` [R, k] (positions, -1 padded) a valid top-k of ``logits`` [R, C]
    (candidates = columns < counts[r]) up to ``tol`` x the row's largest |logit|?"""
    for r in range(sel.shape[0]):
        c = int(counts[r])
        row = sel[r].long()
        nv = int((row >= 0).sum())
        if nv != min(k, c) or bool((row[:nv] < 0).any()) or bool((row[nv:] != -1).any()):
            return False
        chosen = row[:nv]
        if nv and (int(chosen.max()) >= c or chosen.unique().numel() != nv):
            return False
        if c > k:
            vals = logits[r, :c]
            kth = float(torch.topk(vals, k).values[-1])
            slack = tol * float(vals.abs().max())
            if float(vals[chosen].min()) < kth - slack:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
def _load(opts: JobOptions) -> tuple[DSAConfig, str]:
    if opts.config is not None:
        return DSAConfig.from_json(opts.config), str(opts.config)
    if opts.checkpoint is not None:
        p = Path(opts.checkpoint)
        cand = (p if p.is_dir() else p.parent) / "config.json"
        if cand.is_file():
            return DSAConfig.from_json(cand), str(cand)
    return deepseek_v32(), "DeepSeek-V3.2 preset"


def run_job(opts: JobOptions) -> JobReport:
    """Run the layer job described by ``opts`` and check it (module docstring).

    Raises:
        ValueError: bad options (lengths, TP split, kv cache format, dtype).
        FileNotFoundError / KeyError: checkpoint or config problems.
        ProviderError: a strict provider that cannot run an op.
    """
    t_start = time.perf_counter()
    if not opts.lengths or min(opts.lengths) < 1:
        raise ValueError(f"lengths: expected positive request lengths, got {opts.lengths}")
    if opts.decode_steps < 0 or opts.next_n < 1 or opts.chunk < 1:
        raise ValueError(f"decode_steps/next_n/chunk: expected >= 0 / >= 1 / >= 1, got "
                         f"{opts.decode_steps}/{opts.next_n}/{opts.chunk}")
    if opts.kv_cache not in ("bf16", "fp8"):
        raise ValueError(f"kv_cache: expected 'bf16' or 'fp8', got {opts.kv_cache!r}")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if opts.dtype not in dtypes:
        raise ValueError(f"dtype: expected one of {sorted(dtypes)}, got {opts.dtype!r}")
    cfg, cfg_src = _load(opts)
    if opts.heads is not None:
        if opts.heads < 1 or cfg.num_heads % opts.heads:
            raise ValueError(f"heads: expected a divisor of the model's {cfg.num_heads} heads, got {opts.heads}")
        opts = dataclasses.replace(opts, tp_size=cfg.num_heads // opts.heads)
    device = torch.device(opts.device)
    topk = cfg.index_topk if opts.topk is None else opts.topk
    if opts.checkpoint is not None:
        weights = load_layer_weights(opts.checkpoint, cfg, layer=opts.layer, tp_size=opts.tp_size,
                                     tp_rank=opts.tp_rank)
        wsrc = f"{opts.checkpoint} (layer {opts.layer})"
    else:
        weights = random_layer_weights(cfg, seed=opts.seed, tp_size=opts.tp_size, tp_rank=opts.tp_rank)
        wsrc = f"random (seed {opts.seed})"
    layer = DSAAttentionLayer(cfg, weights, topk=topk, provider=opts.provider, dtype=dtypes[opts.dtype],
                              device=device)
    steps, n_dec = opts.decode_steps, opts.next_n
    totals = [n + steps * n_dec for n in opts.lengths]
    pages = sum(-(-t // 64) for t in totals)
    caches = layer.make_caches(pages + max(4, pages // 4), kv_dtype=opts.kv_cache, shuffle_seed=opts.seed)
    reqs = [caches.add_request() for _ in opts.lengths]
    gen = torch.Generator().manual_seed(opts.seed + 1)
    xs = [torch.randn(t, cfg.hidden_size, generator=gen) for t in totals]  # every token of each request
    outs = [torch.zeros(t, cfg.hidden_size) for t in totals]
    has_out = [torch.zeros(t, dtype=torch.bool) for t in totals]

    traces: list[StepTrace] = []
    # each request: a cached prefix (written by the cache stores only, as a prefix-cache hit
    # leaves it) then `extend` tokens prefilled with attention, in chunks of `chunk` tokens
    ext = [n if opts.extend <= 0 else min(n, opts.extend) for n in opts.lengths]
    starts = [n - e for n, e in zip(opts.lengths, ext)]
    with record_selections() as chosen:
        for r, p0 in zip(reqs, starts):
            if p0 > 0:
                traces.append(layer.write_prefix(xs[r][:p0], caches, r))
        n_chunks = max(-(-e // opts.chunk) for e in ext)
        for i in range(n_chunks):
            sel = [(r, p0 + i * opts.chunk, min(opts.chunk, e - i * opts.chunk))
                   for r, p0, e in zip(reqs, starts, ext) if e > i * opts.chunk]
            x = torch.cat([xs[r][a: a + m] for r, a, m in sel])
            out, tr = layer.prefill(x, caches, [r for r, _, _ in sel], [m for _, _, m in sel])
            traces.append(tr)
        for s in range(steps):
            x = torch.cat([xs[r][n + s * n_dec: n + (s + 1) * n_dec] for r, n in zip(reqs, opts.lengths)])
            out, tr = layer.decode(x, caches, reqs, next_n=n_dec)
            traces.append(tr)
    for tr in traces:
        if tr.out is None:
            continue
        off = 0
        for r, m in zip(tr.reqs, tr.lens):
            pos = tr.positions[off: off + m]
            outs[r][pos] = tr.out[off: off + m].float().cpu()
            has_out[r][pos] = True
            off += m

    label = {op: _provider_label(op, opts.provider, chosen) for op in
             ("store_indexer_k", "store_mla_kv", "indexer_topk", "indexer_topk_paged", "sparse_mla_prefill",
              "sparse_mla_decode")}
    notes: list[str] = []
    rows: list[StageRow] = []
    pre = [t for t in traces if t.mode == "prefill"]
    dec = [t for t in traces if t.mode == "decode"]
    fix = [t for t in traces if t.mode == "prefix"]
    n_pre = sum(sum(t.lens) for t in pre)
    n_dec_tok = sum(sum(t.lens) for t in dec)
    n_fix = sum(sum(t.lens) for t in fix)

    def tsum(ts, key):
        return sum(t.times.get(key, 0.0) for t in ts)

    if fix:
        rows.append(StageRow("prefix keys (torch)", "torch",
                             tsum(fix, "prefix_projections"), n_fix,
                             note="cached prefix (prefix-cache hit): keys and latents stored, no attention output"))
    rows.append(StageRow("projections (torch)", "torch", tsum(traces, "projections"), n_pre + n_dec_tok))
    rows += _check_stores(cfg, traces, caches, label, tsum)
    rows += _check_prefill(pre, caches, layer, label, opts, tsum, notes)
    if dec:
        rows += _check_decode(dec, caches, layer, label, opts, tsum)
    rows.append(StageRow("W_UV + o_proj (torch)", "torch", tsum(traces, "output"), n_pre + n_dec_tok))
    rows += _check_dense(cfg, weights, xs, outs, has_out, opts, topk)
    layer_time = sum(sum(t.times.values()) for t in traces if t.mode != "prefix")
    rows.append(StageRow("layer total", opts.provider or "auto", layer_time, n_pre + n_dec_tok,
                         note=f"{len(pre)} prefill step(s), {len(dec)} decode step(s)"))
    if all(_is_reference(label[o]) for o in ("indexer_topk", "sparse_mla_prefill")):
        notes.append("stages ran on the reference provider: the stage checks compare fused with unfused top-k "
                     "and re-stored cache bytes; the dense rows are the independent check of the whole layer.")
    settings = {
        "config": cfg_src, "weights": wsrc, "lengths": opts.lengths, "decode_steps": steps, "next_n": n_dec,
        "chunk": opts.chunk, "extend": opts.extend, "cached_prefix": starts, "topk": topk,
        "heads_local": layer.local_heads, "tp_size": opts.tp_size, "tp_rank": opts.tp_rank,
        "indexer_heads": cfg.index_n_heads, "kv_cache": opts.kv_cache,
        "fp8_dtype": str(caches.fp8_dtype).replace("torch.", ""), "dtype": opts.dtype, "device": str(device),
        "provider": opts.provider or "auto", "softmax_scale": cfg.softmax_scale, "pages": caches.num_pages,
    }
    return JobReport(settings, rows, time.perf_counter() - t_start, notes)


# ---------------------------------------------------------------------------------------------
# stage checks
# ---------------------------------------------------------------------------------------------
def _check_stores(cfg, traces, caches: PagedKVCaches, label, tsum) -> list[StageRow]:
    ref = PagedKVCaches(caches.num_pages, page_size=caches.page_size, kv_dtype=caches.mla.kv_dtype,
                        fp8_dtype=caches.fp8_dtype, device=caches.device)
    slots = torch.cat([t.slots for t in traces]).to(caches.device)
    ops.store_indexer_k(torch.cat([t.index_k for t in traces]), ref.indexer, slots, scale_fmt=cfg.scale_fmt,
                        provider="reference")
    ops.store_mla_kv(torch.cat([t.c_kv for t in traces]), torch.cat([t.k_pe for t in traces]), ref.mla, slots,
                     provider="reference")
    n = slots.numel()
    # indexer keys: dequantized values and scales of every written slot
    kq, ksc = caches.indexer.gather(slots)
    rq, rsc = ref.indexer.gather(slots)
    err_k = _rel_max(kq.float() * ksc.unsqueeze(1), rq.float() * rsc.unsqueeze(1))
    vals, scales = indexer_cache_views(caches.indexer.buffer)
    rvals, rscales = indexer_cache_views(ref.indexer.buffer)
    pg, off = slots // caches.page_size, slots % caches.page_size
    mism = int((vals[pg, off] != rvals[pg, off]).sum()) + int((scales[pg, off] != rscales[pg, off]).sum())
    ok_k = err_k <= TOLERANCES["fp8_store"]
    rows = [StageRow("store_indexer_k", label["store_indexer_k"], tsum(traces, "store_indexer_k"), n, err_k,
                     bytes_per_token=caches.indexer.bytes_per_token, status="pass" if ok_k else "FAIL",
                     note=f"{mism} byte/scale mismatches vs reference")]
    got = caches.mla.gather(slots)
    want = ref.mla.gather(slots)
    err_m = _rel_max(got, want)
    braw, rraw = mla_cache_rows(caches.mla.buffer)[slots], mla_cache_rows(ref.mla.buffer)[slots]
    mism = int((braw.view(torch.uint8) != rraw.view(torch.uint8)).sum())
    tol = TOLERANCES["fp8_store" if caches.mla.kv_dtype == "fp8" else "bf16_store"]
    rows.append(StageRow("store_mla_kv", label["store_mla_kv"], tsum(traces, "store_mla_kv"), n, err_m,
                         bytes_per_token=caches.mla.bytes_per_token, status="pass" if err_m <= tol else "FAIL",
                         note=f"{caches.mla.kv_dtype} latent, {mism} byte mismatches vs reference"))
    return rows


def _check_prefill(pre, caches, layer, label, opts, tsum, notes) -> list[StageRow]:
    k = layer.topk
    n_tok = sum(sum(t.lens) for t in pre)
    same_idx = _is_reference(label["indexer_topk"])
    logit_err, overlaps, valid, n_rows = 0.0, [], True, 0
    mla_err, lse_err = 0.0, 0.0
    same_mla = _is_reference(label["sparse_mla_prefill"])
    sampled = False
    for tr in pre:
        off = 0
        for r, m in zip(tr.reqs, tr.lens):
            rows = _sample_rows(m, opts.check_rows) + off
            sampled |= rows.numel() < m
            off += m
            n_rows += rows.numel()
            dev = tr.q_fp8.device
            rows_d = rows.to(dev)
            q, w = tr.q_fp8[rows_d].contiguous(), tr.weights[rows_d].contiguous()
            ks, ke = tr.ks[rows_d].contiguous(), tr.ke[rows_d].contiguous()
            c0, c1 = int(ks.min()), int(ke.max())
            kf, ksc = tr.k_fp8[c0:c1].contiguous(), tr.k_scale[c0:c1].contiguous()
            ks0, ke0 = (ks - c0).contiguous(), (ke - c0).contiguous()
            ref_logits = ops.indexer_logits(q, kf, ksc, w, ks0, ke0, provider="reference")
            if not same_idx:
                with prefer(opts.provider):
                    got = ops.indexer_logits(q, kf, ksc, w, ks0, ke0)
                logit_err = max(logit_err, _rel_max(got, ref_logits))
            ref_top = ops.topk_indices(ref_logits, ks0, ke0, k=k, provider="reference")
            sel = tr.topk[rows_d]
            overlaps.append((topk_overlap(sel, ref_top), rows.numel()))
            window = ref_logits[:, int(ks0[0]):]  # one request: every row starts at the same key
            valid &= _topk_valid(sel.cpu(), window.cpu(), (ke0 - ks0).cpu(), k, TOLERANCES["topk_score"])
            if not same_mla:
                o, _, lse = ops.sparse_mla_prefill(tr.q_mla[rows_d].contiguous(), caches.mla,
                                                   tr.topk_slots[rows_d].unsqueeze(1).contiguous(),
                                                   sm_scale=layer.cfg.softmax_scale, provider="reference")
                mla_err = max(mla_err, _rel_max(tr.out_latent[rows_d], o))
                lse_err = max(lse_err, _rel_max(tr.lse[rows_d], lse))
    if sampled:
        notes.append(f"prefill stage checks used up to {opts.check_rows} sampled query rows per request "
                     f"({n_rows} of {n_tok})")
    ov = sum(o * n for o, n in overlaps) / max(1, sum(n for _, n in overlaps))
    ok = valid and logit_err <= TOLERANCES["logits"]
    note = "fused vs unfused top-k" if same_idx else "logits + top-k vs reference"
    rows = [StageRow("indexer_topk prefill", label["indexer_topk"],
                     tsum(pre, "indexer_topk") + tsum(pre, "gather_keys"), n_tok,
                     logit_err if not same_idx else None, ov, status="pass" if ok else "FAIL",
                     note=note + ("" if valid else "; INVALID top-k set"))]
    if same_mla:
        rows.append(StageRow("sparse_mla_prefill", label["sparse_mla_prefill"], tsum(pre, "sparse_mla_prefill"),
                             n_tok, note="ran on the reference (see dense rows)"))
    else:
        ok = mla_err <= TOLERANCES["mla_out"] and lse_err <= TOLERANCES["lse"]
        rows.append(StageRow("sparse_mla_prefill", label["sparse_mla_prefill"], tsum(pre, "sparse_mla_prefill"),
                             n_tok, mla_err, status="pass" if ok else "FAIL", note=f"lse rel err {lse_err:.2e}"))
    return rows


def _check_decode(dec, caches, layer, label, opts, tsum) -> list[StageRow]:
    k = layer.topk
    n_tok = sum(sum(t.lens) for t in dec)
    same_idx = _is_reference(label["indexer_topk_paged"])
    same_mla = _is_reference(label["sparse_mla_decode"])
    logit_err, overlaps, valid, mla_err, lse_err = 0.0, [], True, 0.0, 0.0
    for tr in dec:
        b, n = tr.q_fp8.shape[:2]
        ctx, bt = tr.context_lens, tr.block_table
        ref_logits = ops.indexer_logits_paged(tr.q_fp8, caches.indexer, tr.weights, ctx, bt, provider="reference")
        if not same_idx:
            with prefer(opts.provider):
                got = ops.indexer_logits_paged(tr.q_fp8, caches.indexer, tr.weights, ctx, bt)
            logit_err = max(logit_err, _rel_max(got, ref_logits))
        j = torch.arange(n, device=ctx.device).repeat(b)
        ends = (ctx.repeat_interleave(n) - n + j + 1).to(torch.int32)
        starts = torch.zeros_like(ends)
        ref_pos = ops.topk_indices(ref_logits, starts, ends, k=k, provider="reference")
        bt_rows = bt.repeat_interleave(n, dim=0)
        ref_slots = positions_to_slots(ref_pos, bt_rows, caches.page_size)
        overlaps.append((topk_overlap(tr.topk, ref_slots), b * n))
        # slots -> positions to test validity against the logits
        sel_pos = torch.full_like(tr.topk, -1)
        for i in range(b * n):
            length = int(ends[i])
            pos = torch.arange(length, device=ctx.device)
            slot_of = (bt_rows[i].long()[pos // caches.page_size] * caches.page_size + pos % caches.page_size)
            inv = {int(s): p for p, s in enumerate(slot_of.tolist())}
            row = [inv.get(int(s), -2) if s >= 0 else -1 for s in tr.topk[i].tolist()]
            sel_pos[i] = torch.tensor(row, dtype=sel_pos.dtype)
        if bool((sel_pos == -2).any()):
            valid = False
        valid &= _topk_valid(sel_pos.cpu(), ref_logits.cpu(), ends.cpu(), k, TOLERANCES["topk_score"])
        if not same_mla:
            o, lse = ops.sparse_mla_decode(tr.q_mla.view(b, n, layer.local_heads, -1), caches.mla,
                                           tr.topk.view(b, n, -1), sm_scale=layer.cfg.softmax_scale,
                                           provider="reference")
            mla_err = max(mla_err, _rel_max(tr.out_latent.view(b, n, layer.local_heads, -1), o))
            lse_err = max(lse_err, _rel_max(tr.lse, lse.transpose(1, 2).reshape(b * n, -1)))
    ov = sum(o * c for o, c in overlaps) / max(1, sum(c for _, c in overlaps))
    ok = valid and logit_err <= TOLERANCES["logits"]
    note = "fused (slots) vs unfused top-k" if same_idx else "paged logits + top-k vs reference"
    rows = [StageRow(f"indexer_topk_paged n={opts.next_n}", label["indexer_topk_paged"],
                     tsum(dec, "indexer_topk_paged"), n_tok, logit_err if not same_idx else None, ov,
                     status="pass" if ok else "FAIL", note=note + ("" if valid else "; INVALID top-k set"))]
    if same_mla:
        rows.append(StageRow("sparse_mla_decode", label["sparse_mla_decode"], tsum(dec, "sparse_mla_decode"), n_tok,
                             note="ran on the reference (see dense rows)"))
    else:
        ok = mla_err <= TOLERANCES["mla_out"] and lse_err <= TOLERANCES["lse"]
        rows.append(StageRow("sparse_mla_decode", label["sparse_mla_decode"], tsum(dec, "sparse_mla_decode"), n_tok,
                             mla_err, status="pass" if ok else "FAIL", note=f"lse rel err {lse_err:.2e}"))
    return rows


def _check_dense(cfg, weights, xs, outs, has_out, opts, topk) -> list[StageRow]:
    t0 = time.perf_counter()
    eq_err, eq_rows, info_err, info_rows = 0.0, 0, [], 0
    for x, out, mask in zip(xs, outs, has_out):
        have = torch.nonzero(mask).flatten()  # positions the layer computed an output for
        short = have[have < topk]  # context = position + 1 <= topk: sparse must equal dense
        long_ = have[have >= topk]
        if long_.numel() > opts.dense_rows > 0:
            long_ = long_[_sample_rows(long_.numel(), opts.dense_rows)]
        rows = torch.cat([short, long_])
        if rows.numel() == 0:
            continue
        ref = dense_mla_reference(cfg, weights, x, rows)
        err = (out[rows] - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-30)
        err = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
        ns = short.numel()
        if ns:
            eq_err = max(eq_err, float(err[:ns].max()))
            eq_rows += ns
        if long_.numel():
            info_err.append(err[ns:])
            info_rows += long_.numel()
    secs = time.perf_counter() - t0
    tol = DENSE_TOL[opts.kv_cache]
    rows = [StageRow(f"dense, context <= {topk}", "torch", secs, eq_rows,
                     eq_err if eq_rows else None, status=("pass" if eq_err <= tol else "FAIL") if eq_rows else "-",
                     note=f"layer vs dense causal attention: max per-row relative L2 error, tolerance {tol} "
                          f"({opts.kv_cache} cache)")]
    if info_rows:
        e = torch.cat(info_err)
        rows.append(StageRow(f"dense, context > {topk}", "torch", None, info_rows,
                             float(e.max()), status="info",
                             note=f"sampled rows; sparse != dense by design (median {float(e.median()):.3g}), "
                                  "not a check"))
    return rows
