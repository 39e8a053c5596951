"""One DeepSeek-V3.2 DSA attention layer (lightning indexer + top-k + sparse MLA) built only
from the public op interface of :mod:`rocm_dsa.ops`.

Data flow for T tokens (Hl = TP-local MLA heads, IH = indexer heads, all replicated on every rank),
following DeepSeek-V3.2-Exp ``inference/model.py`` (classes ``MLA`` and ``Indexer``, post Nov-2025
fix) in the weight-absorbed form FlashMLA's sparse kernels and SGLang's DSA backend use:

1. ``qr = RMSNorm(q_a_proj(x))`` [T, q_lora]; MLA query ``q_b_proj(qr)`` -> [T, Hl, 192] split
   into q_nope (128) | q_pe (64); ``kv_a_proj_with_mqa(x)`` -> c_kv (512) | k_pe (64), c_kv through
   ``kv_a_layernorm`` (RMSNorm). MLA RoPE is **interleaved** on q_pe and k_pe.
2. Indexer: ``q = wq_b(qr)`` -> [T, IH, 128], ``k = LayerNorm(wk(x))`` (weight + bias) -> [T, 128];
   RoPE on dims 0..63 in the **half-split (NeoX)** layout (interleaved when
   ``cfg.indexer_rope_interleave``, GLM-5); Hadamard (scale 128^-0.5) on q and k; q quantized to
   FP8 with one scale per (token, head) (:func:`rocm_dsa.quantize_fp8`), k quantized per token by
   :func:`rocm_dsa.store_indexer_k` into the paged key cache; head weights
   ``weights_proj(x) * IH^-0.5 * q_scale * 128^-0.5`` [T, IH] float32.
3. Top-k: prefill runs the ragged :func:`rocm_dsa.indexer_topk` over the request's keys gathered
   from the cache (key window [request start, own position]) and maps positions to slots through
   the page table (:func:`rocm_dsa.cache.positions_to_slots`); decode runs
   :func:`rocm_dsa.indexer_topk_paged` with ``return_slots=True``.
4. Sparse MLA (absorbed): ``q = [q_nope @ W_UK | q_pe]`` [T, Hl, 576] bf16 against the latent cache
   rows ``[c_kv | k_pe]`` stored by :func:`rocm_dsa.store_mla_kv`, ``sm_scale = cfg.softmax_scale``
   (0.1352338 for V3.2); output latent [T, Hl, 512] -> ``@ W_UV`` -> [T, Hl, 128] -> ``o_proj``.
   (W_UK / W_UV are the k_nope / value rows of ``kv_b_proj`` per head.)

With tp_size > 1 the output is this rank's partial sum of ``o_proj`` (a real model all-reduces).
Linear layers run in ``dtype`` with dequantized weights (DeepSeek runs FP8 GEMMs on block-quantized
activations there; the attention path, which this project is about, follows the interface exactly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from .. import ops
from ..backends import prefer
from ..cache import positions_to_slots
from ..config import DSAConfig
from ..platform import detect
from .hadamard import hadamard_transform
from .paging import PagedKVCaches
from .rope import apply_rope, apply_rope_interleaved, rope_angles, yarn_inv_freq
from .weights import LayerWeights, load_layer_weights, random_layer_weights

__all__ = ["DSAAttentionLayer", "StepTrace", "rms_norm"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """DeepSeek ``RMSNorm``: ``weight * x / sqrt(mean(x^2) + eps)`` in float32, x's dtype out."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * y).to(x.dtype)


@dataclasses.dataclass
class StepTrace:
    """Inputs and outputs of every interface call of one layer step, for checks and reports.

    T = tokens of the step (request-major), k = top-k width, Hl / IH as in the module docstring.

    Attributes:
        mode: "prefill", "decode" or "prefix" (:meth:`DSAAttentionLayer.write_prefix`: keys only,
            the attention fields are None).
        reqs, lens: request ids of the step and new tokens of each.
        positions: [T] int64 request-local positions; slots: [T] int64 cache slots written.
        index_k: [T, 128] float32 indexer keys given to ``store_indexer_k`` (after LayerNorm,
            RoPE, Hadamard). c_kv [T, 512], k_pe [T, 64]: what ``store_mla_kv`` got.
        q_fp8: indexer queries, [T, IH, 128] (prefill) or [B, next_n, IH, 128] (decode).
        weights: [T, IH] float32 indexer head weights.
        k_fp8, k_scale, ks, ke: the ragged key buffer and windows (prefill only).
        context_lens: [B] int32 (decode only). block_table: [B, max_pages] int32.
        topk: [T, k] int32 what the top-k op returned: request-local positions (prefill) or slots
            (decode). topk_slots: [T, k] int32 slots given to sparse MLA (-1 = none).
        q_mla: [T, Hl, 576] bf16; out_latent: [T, Hl, 512] bf16; lse: [T, Hl] float32.
        out: [T, hidden] layer output.
        times: seconds per stage.
    """

    mode: str
    reqs: list[int]
    lens: list[int]
    positions: torch.Tensor
    slots: torch.Tensor
    index_k: torch.Tensor
    c_kv: torch.Tensor
    k_pe: torch.Tensor
    times: dict[str, float]
    q_fp8: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    block_table: torch.Tensor | None = None
    topk: torch.Tensor | None = None
    topk_slots: torch.Tensor | None = None
    q_mla: torch.Tensor | None = None
    out_latent: torch.Tensor | None = None
    lse: torch.Tensor | None = None
    out: torch.Tensor | None = None
    k_fp8: torch.Tensor | None = None
    k_scale: torch.Tensor | None = None
    ks: torch.Tensor | None = None
    ke: torch.Tensor | None = None
    context_lens: torch.Tensor | None = None


class DSAAttentionLayer:
    """DeepSeek-V3.2 sparse attention layer on one TP rank (data flow in the module docstring).

    Args:
        cfg: model config (:class:`rocm_dsa.DSAConfig`).
        weights: this rank's :class:`LayerWeights` (its ``tp_size`` / ``tp_rank`` define the split:
            local MLA heads = ``cfg.num_heads // tp_size``; the indexer keeps all its heads).
        tp_size, tp_rank: optional; when given they must match the weights' split.
        topk: indexer top-k width (default ``cfg.index_topk``, 2048 for V3.2).
        provider: provider for every interface call: None = automatic (environment, then the
            platform's list); a name is tried first through :func:`rocm_dsa.backends.prefer`
            (ops it cannot run fall back, logged) or required when ``strict``.
        strict: pass ``provider`` explicitly to each op (ProviderError if it cannot run one).
        dtype: dtype of the projections (weights are converted once).
        device: default: the weights' device.
    Raises:
        ValueError: weights that do not match ``cfg`` or the TP split, bad ``topk``.
    """

    def __init__(self, cfg: DSAConfig, weights: LayerWeights, *, tp_size: int | None = None,
                 tp_rank: int | None = None, topk: int | None = None, provider: str | None = None,
                 strict: bool = False, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        weights.check(cfg)
        if (tp_size is not None and tp_size != weights.tp_size) or (tp_rank is not None and tp_rank != weights.tp_rank):
            raise ValueError(f"tp_size/tp_rank: the weights hold rank {weights.tp_rank} of {weights.tp_size}, "
                             f"got {tp_rank} of {tp_size}")
        if cfg.kv_lora_rank != 512 or cfg.qk_rope_head_dim != 64 or cfg.index_head_dim != 128:
            raise ValueError(
                "cfg: the op interface needs kv_lora_rank 512, qk_rope_head_dim 64, index_head_dim 128; got "
                f"{cfg.kv_lora_rank}, {cfg.qk_rope_head_dim}, {cfg.index_head_dim}"
            )
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else weights.q_a_proj.device
        self.dtype = dtype
        self.w = weights.to(dtype=dtype, device=self.device)
        self.tp_size, self.tp_rank = weights.tp_size, weights.tp_rank
        self.local_heads = cfg.local_heads(self.tp_size)
        self.topk = cfg.index_topk if topk is None else int(topk)
        if self.topk < 1:
            raise ValueError(f"topk: expected >= 1, got {topk}")
        self.provider = provider
        self.strict = strict
        self.inv_freq = yarn_inv_freq(cfg).to(self.device)
        kvb = self.w.kv_b_proj.float().view(self.local_heads, cfg.qk_nope_head_dim + cfg.v_head_dim,
                                            cfg.kv_lora_rank)
        self.w_uk = kvb[:, : cfg.qk_nope_head_dim].contiguous()  # [Hl, 128, 512]
        self.w_uv = kvb[:, cfg.qk_nope_head_dim:].contiguous()   # [Hl, 128, 512]

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def random(cls, cfg: DSAConfig, *, seed: int = 0, tp_size: int = 1, tp_rank: int = 0,
               device: torch.device | str = "cpu", **kwargs) -> "DSAAttentionLayer":
        """A layer with :func:`random_layer_weights` (other arguments as the constructor)."""
        w = random_layer_weights(cfg, seed=seed, tp_size=tp_size, tp_rank=tp_rank, device=device)
        return cls(cfg, w, tp_size=tp_size, tp_rank=tp_rank, **kwargs)

    @classmethod
    def from_checkpoint(cls, path, cfg: DSAConfig, *, layer: int = 0, tp_size: int = 1, tp_rank: int = 0,
                        device: torch.device | str = "cpu", **kwargs) -> "DSAAttentionLayer":
        """A layer with weights from a DeepSeek-V3.2 safetensors checkpoint (:func:`load_layer_weights`)."""
        w = load_layer_weights(path, cfg, layer=layer, tp_size=tp_size, tp_rank=tp_rank, device=device)
        return cls(cfg, w, tp_size=tp_size, tp_rank=tp_rank, **kwargs)

    def make_caches(self, num_pages: int, *, kv_dtype: str = "bf16", fp8_dtype: torch.dtype | None = None,
                    shuffle_seed: int | None = 0, page_size: int = 64) -> PagedKVCaches:
        """Paged caches for this layer (FP8 default: the device's native e4m3 flavour)."""
        fp8 = detect(self.device).fp8_dtype if fp8_dtype is None else fp8_dtype
        return PagedKVCaches(num_pages, page_size=page_size, kv_dtype=kv_dtype, fp8_dtype=fp8,
                             device=self.device, shuffle_seed=shuffle_seed)

    # ---- helpers ---------------------------------------------------------------------------
    def _op(self, fn, *args, **kwargs):
        if self.strict:
            return fn(*args, provider=self.provider, **kwargs)
        with prefer(self.provider):
            return fn(*args, **kwargs)

    @contextlib.contextmanager
    def _timed(self, times: dict[str, float], name: str) -> Iterator[None]:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0

    def _rope_and_input(self, x: torch.Tensor, positions: torch.Tensor):
        cos, sin = rope_angles(positions.to(self.device), self.inv_freq)  # [T, rope/2]
        return x.to(device=self.device, dtype=self.dtype), cos, sin

    def _project_keys(self, xw: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> dict[str, torch.Tensor]:
        """Key side of T tokens: MLA latent c_kv [T, 512] (RMSNorm) and k_pe [T, 64] (interleaved
        RoPE), indexer key [T, 128] (LayerNorm, RoPE on dims 0..63, Hadamard), all float32."""
        cfg, w = self.cfg, self.w
        rope = cfg.qk_rope_head_dim
        kv = xw @ w.kv_a_proj_with_mqa.T
        c_kv = rms_norm(kv[:, : cfg.kv_lora_rank], w.kv_a_layernorm, cfg.rms_norm_eps).float().contiguous()
        k_pe = apply_rope_interleaved(kv[:, cfg.kv_lora_rank:], cos, sin).float().contiguous()
        ik = F.layer_norm((xw @ w.indexer_wk.T).float(), (cfg.index_head_dim,), w.indexer_k_norm_weight.float(),
                          w.indexer_k_norm_bias.float(), cfg.indexer_norm_eps).to(self.dtype)
        ik = torch.cat([apply_rope(ik[:, :rope], cos, sin, interleaved=cfg.indexer_rope_interleave),
                        ik[:, rope:]], dim=-1)
        return {"c_kv": c_kv, "k_pe": k_pe, "index_k": hadamard_transform(ik).contiguous()}

    def _project_queries(self, xw: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                         fp8_dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Query side of T tokens: absorbed MLA query [T, Hl, 576] bf16, indexer FP8 query
        [T, IH, 128] and head weights [T, IH] float32."""
        cfg, w = self.cfg, self.w
        t = xw.shape[0]
        nope, rope = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        qr = rms_norm(xw @ w.q_a_proj.T, w.q_a_layernorm, cfg.rms_norm_eps)  # [T, q_lora]
        # MLA query: interleaved RoPE on q_pe, q_nope absorbed into the latent space by W_UK
        q = (qr @ w.q_b_proj.T).view(t, self.local_heads, nope + rope)
        q_pe = apply_rope_interleaved(q[..., nope:], cos.unsqueeze(1), sin.unsqueeze(1)).float()
        q_latent = torch.einsum("thd,hdc->thc", q[..., :nope].float(), self.w_uk)  # [T, Hl, 512]
        q_mla = torch.cat([q_latent, q_pe], dim=-1).to(torch.bfloat16).contiguous()
        # indexer query: RoPE on dims 0..rope-1 (half-split for V3.2), Hadamard, FP8 per (token, head)
        iq = (qr @ w.indexer_wq_b.T).view(t, cfg.index_n_heads, cfg.index_head_dim)
        iq = torch.cat([apply_rope(iq[..., :rope], cos.unsqueeze(1), sin.unsqueeze(1),
                                   interleaved=cfg.indexer_rope_interleave), iq[..., rope:]], dim=-1)
        q_fp8, q_scale = ops.quantize_fp8(hadamard_transform(iq), block_size=cfg.index_head_dim,
                                          fp8_dtype=fp8_dtype, scale_fmt=cfg.scale_fmt)  # q_scale [T, IH, 1]
        weights = (xw @ w.indexer_weights_proj.T).float() * (cfg.indexer_head_scale * cfg.indexer_softmax_scale)
        return {"q_mla": q_mla, "q_fp8": q_fp8.contiguous(), "weights": (weights * q_scale[..., 0]).contiguous()}

    def _project(self, x: torch.Tensor, positions: torch.Tensor, fp8_dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Every projection of T tokens x [T, hidden] at request-local positions [T]."""
        xw, cos, sin = self._rope_and_input(x, positions)
        return {**self._project_keys(xw, cos, sin), **self._project_queries(xw, cos, sin, fp8_dtype)}

    def _output(self, out_latent: torch.Tensor) -> torch.Tensor:
        """out_latent [T, Hl, 512] -> W_UV -> o_proj -> [T, hidden] in ``dtype``."""
        o = torch.einsum("thc,hdc->thd", out_latent.float(), self.w_uv)
        return o.reshape(o.shape[0], -1).to(self.dtype) @ self.w.o_proj.T

    def _store(self, caches: PagedKVCaches, p: dict[str, torch.Tensor], slots: torch.Tensor,
               times: dict[str, float]) -> None:
        with self._timed(times, "store_indexer_k"):
            self._op(ops.store_indexer_k, p["index_k"], caches.indexer, slots, scale_fmt=self.cfg.scale_fmt)
        with self._timed(times, "store_mla_kv"):
            self._op(ops.store_mla_kv, p["c_kv"], p["k_pe"], caches.mla, slots)

    # ---- steps -----------------------------------------------------------------------------
    def write_prefix(self, x: torch.Tensor, caches: PagedKVCaches, req: int) -> StepTrace:
        """Append tokens to request ``req``'s caches without computing their attention output:
        the state a prefix-cache hit leaves (keys and latents of an earlier identical prompt).

        The cache contents equal what :meth:`prefill` would store for the same tokens (stores are
        per token), so a later prefill of the following tokens is exact.

        Args:
            x: [n, hidden] hidden states at positions seq_len .. seq_len + n - 1 of ``req``.
        Returns:
            :class:`StepTrace` with mode "prefix" (stores only).
        Raises:
            ValueError: bad shape. RuntimeError: out of pages.
        """
        if x.dim() != 2 or x.shape[1] != self.cfg.hidden_size or x.shape[0] < 1:
            raise ValueError(f"x: expected shape [n >= 1, {self.cfg.hidden_size}], got {list(x.shape)}")
        n = x.shape[0]
        times: dict[str, float] = {}
        start = caches.seq_lens[req]
        positions = torch.arange(start, start + n)
        slots = caches.reserve(req, n)
        with self._timed(times, "prefix_projections"):
            xw, cos, sin = self._rope_and_input(x, positions)
            p = self._project_keys(xw, cos, sin)
        self._store(caches, p, slots, times)
        return StepTrace("prefix", [req], [n], positions, slots, p["index_k"], p["c_kv"], p["k_pe"], times)

    def prefill(self, x: torch.Tensor, caches: PagedKVCaches, reqs: Sequence[int], lens: Sequence[int]
                ) -> tuple[torch.Tensor, StepTrace]:
        """Prefill (or extend) a ragged batch: request ``reqs[i]`` gets ``lens[i]`` new tokens after
        the ``caches.seq_lens[reqs[i]]`` it already holds (a cached prefix, e.g. chunked prefill).

        Args:
            x: [sum(lens), hidden] hidden states, request-major, positions ascending.
            caches: the layer's :class:`PagedKVCaches`; pages are allocated here.
            reqs, lens: request ids (distinct) and new-token counts (>= 1).
        Returns:
            (out [sum(lens), hidden] in ``dtype``, :class:`StepTrace`).
        Raises:
            ValueError: shapes or lengths that do not agree. RuntimeError: out of pages.
        """
        cfg = self.cfg
        reqs, lens = list(reqs), [int(n) for n in lens]
        t = sum(lens)
        if len(reqs) != len(lens) or len(set(reqs)) != len(reqs) or min(lens, default=0) < 1:
            raise ValueError(f"reqs/lens: expected distinct requests with >= 1 new token each, got {reqs} / {lens}")
        if x.dim() != 2 or x.shape != (t, cfg.hidden_size):
            raise ValueError(f"x: expected shape [{t}, {cfg.hidden_size}], got {list(x.shape)}")
        times: dict[str, float] = {}
        prefix = [caches.seq_lens[r] for r in reqs]
        positions = torch.cat([torch.arange(p, p + n) for p, n in zip(prefix, lens)])
        slots = torch.cat([caches.reserve(r, n) for r, n in zip(reqs, lens)])
        with self._timed(times, "projections"):
            p = self._project(x, positions, caches.fp8_dtype)
        self._store(caches, p, slots, times)
        dev = self.device
        with self._timed(times, "gather_keys"):
            # ragged key buffer: every key of each request (cached prefix + new), read back from the cache
            ks_list, ke_list, k_fp8, k_scale, base = [], [], [], [], 0
            for r, pre, n in zip(reqs, prefix, lens):
                total = pre + n
                kf, ksc = caches.indexer.gather(caches.slots(r, torch.arange(total)))
                k_fp8.append(kf)
                k_scale.append(ksc)
                ks_list.append(torch.full((n,), base, dtype=torch.int32))
                ke_list.append(base + torch.arange(pre, total, dtype=torch.int32) + 1)  # causal: own key included
                base += total
            k_fp8_t = torch.cat(k_fp8).contiguous()
            k_scale_t = torch.cat(k_scale).contiguous()
            ks, ke = torch.cat(ks_list).to(dev), torch.cat(ke_list).to(dev)
        with self._timed(times, "indexer_topk"):
            topk = self._op(ops.indexer_topk, p["q_fp8"], k_fp8_t, k_scale_t, p["weights"], ks, ke, k=self.topk)
        bt = caches.block_table(reqs)
        rows = torch.repeat_interleave(torch.arange(len(reqs), device=dev), torch.tensor(lens, device=dev))
        topk_slots = positions_to_slots(topk, bt[rows], caches.page_size)
        with self._timed(times, "sparse_mla_prefill"):
            out_latent, _, lse = self._op(ops.sparse_mla_prefill, p["q_mla"], caches.mla,
                                          topk_slots.unsqueeze(1).contiguous(), sm_scale=cfg.softmax_scale)
        with self._timed(times, "output"):
            out = self._output(out_latent)
        trace = StepTrace("prefill", reqs, lens, positions, slots, p["index_k"], p["c_kv"], p["k_pe"], times,
                          q_fp8=p["q_fp8"], weights=p["weights"], block_table=bt, topk=topk, topk_slots=topk_slots,
                          q_mla=p["q_mla"], out_latent=out_latent, lse=lse, out=out, k_fp8=k_fp8_t,
                          k_scale=k_scale_t, ks=ks, ke=ke)
        return out, trace

    def decode(self, x: torch.Tensor, caches: PagedKVCaches, reqs: Sequence[int], *, next_n: int = 1
               ) -> tuple[torch.Tensor, StepTrace]:
        """One decode step: ``next_n`` new tokens per request (next_n > 1 = MTP verification; token
        j of n sees keys 0 .. L - n + j, L the context after the step).

        Args:
            x: [len(reqs) * next_n, hidden] request-major.
            caches, reqs: as :meth:`prefill`; every request must already hold tokens.
            next_n: tokens per request.
        Returns:
            (out [len(reqs) * next_n, hidden], :class:`StepTrace`).
        Raises:
            ValueError: bad shapes / next_n / empty request. RuntimeError: out of pages.
        """
        cfg = self.cfg
        reqs = list(reqs)
        b = len(reqs)
        if next_n < 1:
            raise ValueError(f"next_n: expected >= 1, got {next_n}")
        if x.dim() != 2 or x.shape != (b * next_n, cfg.hidden_size):
            raise ValueError(f"x: expected shape [{b * next_n}, {cfg.hidden_size}], got {list(x.shape)}")
        if any(caches.seq_lens[r] == 0 for r in reqs) or len(set(reqs)) != b:
            raise ValueError(f"reqs: expected distinct requests that were prefilled, got {reqs}")
        times: dict[str, float] = {}
        prefix = [caches.seq_lens[r] for r in reqs]
        positions = torch.cat([torch.arange(p, p + next_n) for p in prefix])
        slots = torch.cat([caches.reserve(r, next_n) for r in reqs])
        with self._timed(times, "projections"):
            p = self._project(x, positions, caches.fp8_dtype)
        self._store(caches, p, slots, times)
        ctx = caches.context_lens(reqs)
        bt = caches.block_table(reqs)
        q_fp8 = p["q_fp8"].view(b, next_n, cfg.index_n_heads, cfg.index_head_dim)
        with self._timed(times, "indexer_topk_paged"):
            topk = self._op(ops.indexer_topk_paged, q_fp8, caches.indexer, p["weights"], ctx, bt, k=self.topk,
                            return_slots=True)
        with self._timed(times, "sparse_mla_decode"):
            out_latent, lse = self._op(ops.sparse_mla_decode, p["q_mla"].view(b, next_n, self.local_heads, -1),
                                       caches.mla, topk.view(b, next_n, -1), sm_scale=cfg.softmax_scale)
        out_latent = out_latent.reshape(b * next_n, self.local_heads, -1)
        with self._timed(times, "output"):
            out = self._output(out_latent)
        trace = StepTrace("decode", reqs, [next_n] * b, positions, slots, p["index_k"], p["c_kv"], p["k_pe"], times,
                          q_fp8=q_fp8, weights=p["weights"], block_table=bt, topk=topk, topk_slots=topk,
                          q_mla=p["q_mla"], out_latent=out_latent,
                          lse=lse.transpose(1, 2).reshape(b * next_n, self.local_heads), out=out, context_lens=ctx)
        return out, trace
