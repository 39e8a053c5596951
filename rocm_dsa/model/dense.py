"""Dense causal MLA attention in plain PyTorch: what the sparse layer must equal when a query's
context holds no more keys than top-k (then the indexer selects every key).

It is computed independently of the op interface and of the absorbed form: the un-absorbed
multi-head form of DeepSeek-V3.2-Exp ``MLA.forward`` ("MHA prefill" branch, without the indexer
mask): per head, keys ``[W_UK c_kv | k_pe]`` (192 dims) and values ``W_UV c_kv`` (128 dims), in
float32, for the requested query rows only (so long requests stay cheap to check).
"""

from __future__ import annotations

import torch

from ..config import DSAConfig
from .rope import apply_rope_interleaved, rope_angles, yarn_inv_freq
from .weights import LayerWeights

__all__ = ["dense_mla_reference"]


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@torch.no_grad()
def dense_mla_reference(cfg: DSAConfig, weights: LayerWeights, x: torch.Tensor, rows: torch.Tensor, *,
                        row_chunk: int = 256) -> torch.Tensor:
    """Dense causal MLA output of one request for some query rows.

    Args:
        cfg: model config.
        weights: the rank's weights (its local heads; output = that rank's o_proj partial sum).
        x: [L, hidden] hidden states of ALL tokens of the request, position 0 .. L-1.
        rows: [R] int64 query positions (< L); row r attends to keys 0 .. rows[r].
        row_chunk: query rows per chunk (bounds memory at row_chunk x heads x L floats).
    Returns:
        [R, hidden] float32.
    Raises:
        ValueError: shapes that do not match ``cfg`` or rows out of range.
    """
    if x.dim() != 2 or x.shape[1] != cfg.hidden_size:
        raise ValueError(f"x: expected shape [L, {cfg.hidden_size}], got {list(x.shape)}")
    n = x.shape[0]
    rows = rows.long().cpu()
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
        raise ValueError(f"rows: expected positions in [0, {n}), got min {int(rows.min())} max {int(rows.max())}")
    w = weights.to(dtype=torch.float32, device="cpu")
    hl = w.q_b_proj.shape[0] // cfg.qk_head_dim
    nope, rope, dv = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    inv_freq = yarn_inv_freq(cfg)
    xf = x.detach().float().cpu()
    # keys and values of every position
    kv = xf @ w.kv_a_proj_with_mqa.T
    c = _rms(kv[:, : cfg.kv_lora_rank], w.kv_a_layernorm, cfg.rms_norm_eps)  # [L, 512]
    cos, sin = rope_angles(torch.arange(n), inv_freq)
    k_pe = apply_rope_interleaved(kv[:, cfg.kv_lora_rank:], cos, sin)  # [L, 64]
    kvb = w.kv_b_proj.view(hl, nope + dv, cfg.kv_lora_rank)
    k_nope = torch.einsum("lc,hdc->hld", c, kvb[:, :nope])  # [Hl, L, 128]
    v = torch.einsum("lc,hdc->hld", c, kvb[:, nope:])        # [Hl, L, 128]
    out = torch.empty(rows.numel(), cfg.hidden_size)
    for r0 in range(0, rows.numel(), row_chunk):
        rr = rows[r0 : r0 + row_chunk]
        span = int(rr.max()) + 1
        qr = _rms(xf[rr] @ w.q_a_proj.T, w.q_a_layernorm, cfg.rms_norm_eps)
        q = (qr @ w.q_b_proj.T).view(-1, hl, nope + rope)
        qc, qs = rope_angles(rr, inv_freq)
        q_pe = apply_rope_interleaved(q[..., nope:], qc.unsqueeze(1), qs.unsqueeze(1))
        s = torch.einsum("rhd,hld->rhl", q[..., :nope], k_nope[:, :span]) \
            + torch.einsum("rhd,ld->rhl", q_pe, k_pe[:span])
        s = s * cfg.softmax_scale
        causal = torch.arange(span).unsqueeze(0) <= rr.unsqueeze(1)  # [R, span]
        s = s.masked_fill(~causal.unsqueeze(1), float("-inf"))
        o = torch.einsum("rhl,hld->rhd", torch.softmax(s, dim=-1), v[:, :span])
        out[r0 : r0 + row_chunk] = o.reshape(o.shape[0], -1) @ w.o_proj.T
    return out
