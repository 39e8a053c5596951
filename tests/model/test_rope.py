"""RoPE: YaRN frequencies as DeepSeek's precompute_freqs_cis, the two pair layouts against
explicit formulas, and the layer using half-split (NeoX) RoPE in the indexer but interleaved RoPE
in MLA. Every layout test fails if the two layouts are swapped anywhere."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rocm_dsa.config import deepseek_v32
from rocm_dsa.model.hadamard import hadamard_transform
from rocm_dsa.model.layer import DSAAttentionLayer, rms_norm
from rocm_dsa.model.rope import (
    apply_rope,
    apply_rope_half_split,
    apply_rope_interleaved,
    rope_angles,
    yarn_inv_freq,
)


def _explicit(x: torch.Tensor, pos: torch.Tensor, freq: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Rotate each listed pair (a, b) of x [T, d] by pos[t] * freq[i], element by element (float64
    trigonometry; the angle itself is a float32 product, as DeepSeek's precompute_freqs_cis makes it)."""
    out = x.double().clone()
    for i, (a, b) in enumerate(pairs):
        ang = (pos.float() * freq[i]).double()
        c, s = torch.cos(ang), torch.sin(ang)
        out[:, a] = x[:, a].double() * c - x[:, b].double() * s
        out[:, b] = x[:, a].double() * s + x[:, b].double() * c
    return out


def _interleaved_pairs(d):
    return [(2 * i, 2 * i + 1) for i in range(d // 2)]


def _half_pairs(d):
    return [(i, i + d // 2) for i in range(d // 2)]


@pytest.mark.parametrize("d", [8, 64])
def test_layouts_match_explicit_formulas(d):
    cfg = deepseek_v32()
    freq = yarn_inv_freq(cfg, d)
    x = torch.randn(37, d)
    pos = torch.randint(0, 163840, (37,))
    cos, sin = rope_angles(pos, freq)
    inter = apply_rope_interleaved(x, cos, sin)
    half = apply_rope_half_split(x, cos, sin)
    exp_inter = _explicit(x, pos, freq, _interleaved_pairs(d))
    exp_half = _explicit(x, pos, freq, _half_pairs(d))
    assert torch.allclose(inter.double(), exp_inter, atol=2e-4)
    assert torch.allclose(half.double(), exp_half, atol=2e-4)
    # the two layouts really differ (a swap cannot pass both assertions above)
    assert (inter - half).abs().max() > 0.1
    assert torch.equal(apply_rope(x, cos, sin, interleaved=True), inter)
    assert torch.equal(apply_rope(x, cos, sin, interleaved=False), half)


def test_layouts_match_deepseek_complex_form():
    """DeepSeek's apply_rotary_emb: complex multiply of (x[2i], x[2i+1]) (interleaved) or of
    (x[i], x[i+d/2]) with the result re-split into real | imaginary halves (interleaved=False)."""
    d = 64
    freq = yarn_inv_freq(deepseek_v32())
    x = torch.randn(5, 3, d)  # [T, H, d]
    pos = torch.tensor([0, 1, 4095, 4096, 100000])
    cis = torch.polar(torch.ones(5, d // 2), pos.float().unsqueeze(1) * freq)  # [T, d/2]
    cos, sin = rope_angles(pos, freq)
    z = torch.view_as_complex(x.reshape(5, 3, d // 2, 2).contiguous())
    want_inter = torch.view_as_real(z * cis.unsqueeze(1)).flatten(2)
    got = apply_rope_interleaved(x, cos.unsqueeze(1), sin.unsqueeze(1))
    assert torch.allclose(got, want_inter, atol=1e-5)
    zh = torch.view_as_complex(x.view(5, 3, 2, d // 2).transpose(-1, -2).contiguous())
    y = torch.view_as_real(zh * cis.unsqueeze(1)).flatten(2)
    want_half = torch.cat([y[..., 0::2], y[..., 1::2]], dim=-1)
    got = apply_rope_half_split(x, cos.unsqueeze(1), sin.unsqueeze(1))
    assert torch.allclose(got, want_half, atol=1e-5)


def test_yarn_frequencies_deepseek_v32():
    cfg = deepseek_v32()
    f = yarn_inv_freq(cfg).double()
    base = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float64) / 64))
    # correction range for beta_fast=32, beta_slow=1, original context 4096, dim 64: [10, 23]
    def cdim(rot):
        return 64 * math.log(4096 / (rot * 2 * math.pi)) / (2 * math.log(10000.0))
    lo, hi = math.floor(cdim(32)), math.ceil(cdim(1))
    assert (lo, hi) == (10, 23)
    i = torch.arange(32, dtype=torch.float64)
    ramp = ((i - lo) / (hi - lo)).clamp(0, 1)
    want = base / 40 * ramp + base * (1 - ramp)
    assert torch.allclose(f, want, rtol=1e-6)
    assert torch.allclose(f[:11], base[:11].double(), rtol=1e-6)   # high frequencies kept
    assert torch.allclose(f[23:], base[23:] / 40, rtol=1e-6)        # low frequencies / factor


def test_no_yarn_when_context_not_extended():
    cfg = deepseek_v32().replace(max_position_embeddings=4096)
    base = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    assert torch.allclose(yarn_inv_freq(cfg), base)


def test_bad_width_raises():
    with pytest.raises(ValueError, match="dim"):
        yarn_inv_freq(deepseek_v32(), 7)
    cos, sin = rope_angles(torch.arange(3), yarn_inv_freq(deepseek_v32(), 8))
    with pytest.raises(ValueError, match="x"):
        apply_rope_half_split(torch.randn(3, 10), cos, sin)


# ---------------------------------------------------------------------------------------------
# the layer uses each layout where DeepSeek-V3.2 does
# ---------------------------------------------------------------------------------------------
def _layer_keys(cfg, interleave_indexer: bool):
    cfg = cfg.replace(indexer_rope_interleave=interleave_indexer)
    layer = DSAAttentionLayer.random(cfg, seed=3, topk=64)
    caches = layer.make_caches(8)
    r = caches.add_request()
    caches.add_request()
    x = torch.randn(50, cfg.hidden_size)
    _, tr = layer.prefill(x, caches, [r], [50])
    return cfg, layer, x, tr


@pytest.mark.parametrize("interleave_indexer", [False, True], ids=["v32-neox-indexer", "glm5-interleaved-indexer"])
def test_layer_uses_each_layout_where_required(small_cfg, interleave_indexer):
    cfg, layer, x, tr = _layer_keys(small_cfg, interleave_indexer)
    w = layer.w
    pos = torch.arange(50)
    freq = yarn_inv_freq(cfg)
    # MLA k_pe: interleaved RoPE of the last 64 outputs of kv_a_proj_with_mqa
    k_raw = (x @ w.kv_a_proj_with_mqa.T)[:, 512:]
    want = _explicit(k_raw, pos, freq, _interleaved_pairs(64))
    assert torch.allclose(tr.k_pe.double(), want, atol=1e-4)
    assert not torch.allclose(tr.k_pe.double(), _explicit(k_raw, pos, freq, _half_pairs(64)), atol=1e-2)
    # MLA q_pe: interleaved RoPE of q_b_proj's last 64 dims of each head (last 64 of the 576 query)
    qr = rms_norm(x @ w.q_a_proj.T, w.q_a_layernorm, cfg.rms_norm_eps)
    q = (qr @ w.q_b_proj.T).view(50, layer.local_heads, 192)[..., 128:]
    for h in range(layer.local_heads):
        want = _explicit(q[:, h], pos, freq, _interleaved_pairs(64))
        assert torch.allclose(tr.q_mla[:, h, 512:].double(), want, atol=0.05)  # bf16 query
    # indexer key: undo the (self-inverse) Hadamard, then dims 0..63 must be half-split RoPE (V3.2)
    ik = hadamard_transform(tr.index_k)
    k_ln = F.layer_norm(x @ w.indexer_wk.T, (128,), w.indexer_k_norm_weight, w.indexer_k_norm_bias, 1e-6)
    pairs = _interleaved_pairs(64) if interleave_indexer else _half_pairs(64)
    other = _half_pairs(64) if interleave_indexer else _interleaved_pairs(64)
    assert torch.allclose(ik[:, :64].double(), _explicit(k_ln[:, :64], pos, freq, pairs), atol=1e-4)
    assert not torch.allclose(ik[:, :64].double(), _explicit(k_ln[:, :64], pos, freq, other), atol=1e-2)
    assert torch.allclose(ik[:, 64:], k_ln[:, 64:], atol=1e-5)  # dims 64..127 carry no RoPE
