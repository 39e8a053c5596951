"""Weights of one DSA attention layer: DeepSeek-V3.2 safetensors names, FP8 block dequantization,
tensor-parallel slicing and seeded random weights.

Tensor names (Hugging Face ``deepseek-ai/DeepSeek-V3.2`` checkpoint, prefix
``model.layers.{L}.self_attn.``), shapes for the full model (H = 128 heads, IH = 64 indexer heads):

=========================================  ==========================  =====================
name                                       shape [out, in]             stored as
=========================================  ==========================  =====================
q_a_proj.weight                            [q_lora 1536, hidden 7168]  FP8 + weight_scale_inv
q_a_layernorm.weight                       [1536]                      bf16 (RMSNorm)
q_b_proj.weight                            [H * 192, 1536]             FP8 + weight_scale_inv
kv_a_proj_with_mqa.weight                  [512 + 64, 7168]            FP8 + weight_scale_inv
kv_a_layernorm.weight                      [512]                       bf16 (RMSNorm)
kv_b_proj.weight                           [H * (128 + 128), 512]      FP8 + weight_scale_inv
o_proj.weight                              [7168, H * 128]             FP8 + weight_scale_inv
indexer.wq_b.weight                        [IH * 128, 1536]            FP8 + weight_scale_inv
indexer.wk.weight                          [128, 7168]                 FP8 + weight_scale_inv
indexer.k_norm.weight / .bias              [128]                       fp32 (LayerNorm)
indexer.weights_proj.weight                [IH, 7168]                  bf16
=========================================  ==========================  =====================

FP8 weights are OCP e4m3fn with one fp32 ``weight_scale_inv`` per 128 x 128 block (the last block
row/column may be partial): ``w[i, j] = fp8[i, j] * scale_inv[i // 128, j // 128]``
(DeepSeek-V3.2-Exp ``inference/model.py`` ``weight_dequant``; the name says "inverse" but the
value multiplies). Weights without a ``weight_scale_inv`` load as they are (bf16 checkpoints).

Tensor parallelism (DeepSeek's ColumnParallelLinear / RowParallelLinear): rank r of tp keeps
heads [r * H/tp, (r+1) * H/tp): rows of ``q_b_proj`` and ``kv_b_proj``, columns of ``o_proj``
(so its output is a partial sum that a real model all-reduces). Everything else, the indexer
included, is replicated: every rank runs all indexer heads and must pick identical top-k sets.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import torch

from ..config import DSAConfig

__all__ = [
    "LayerWeights",
    "layer_prefix",
    "dequantize_block_fp8",
    "quantize_block_fp8",
    "load_layer_weights",
    "random_layer_weights",
    "checkpoint_tensors",
]

#: LayerWeights field -> checkpoint name (after ``model.layers.{L}.self_attn.``)
CHECKPOINT_NAMES: dict[str, str] = {
    "q_a_proj": "q_a_proj.weight",
    "q_a_layernorm": "q_a_layernorm.weight",
    "q_b_proj": "q_b_proj.weight",
    "kv_a_proj_with_mqa": "kv_a_proj_with_mqa.weight",
    "kv_a_layernorm": "kv_a_layernorm.weight",
    "kv_b_proj": "kv_b_proj.weight",
    "o_proj": "o_proj.weight",
    "indexer_wq_b": "indexer.wq_b.weight",
    "indexer_wk": "indexer.wk.weight",
    "indexer_k_norm_weight": "indexer.k_norm.weight",
    "indexer_k_norm_bias": "indexer.k_norm.bias",
    "indexer_weights_proj": "indexer.weights_proj.weight",
}
#: weights the DeepSeek-V3.2 checkpoint stores as FP8 with block scales
FP8_FIELDS = frozenset({"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj",
                        "indexer_wq_b", "indexer_wk"})
#: weights split across TP ranks: field -> (dim, per-head width getter)
_HEAD_SPLIT = {
    "q_b_proj": (0, lambda c: c.qk_head_dim),
    "kv_b_proj": (0, lambda c: c.qk_nope_head_dim + c.v_head_dim),
    "o_proj": (1, lambda c: c.v_head_dim),
}


def _scale_name(name: str) -> str:
    """``x.weight`` -> ``x.weight_scale_inv`` (the block-scale tensor of an FP8 weight)."""
    return name[: -len("weight")] + "weight_scale_inv"


def layer_prefix(layer: int) -> str:
    """Checkpoint name prefix of one layer's attention: ``model.layers.{layer}.self_attn.``."""
    return f"model.layers.{layer}.self_attn."


def full_shapes(cfg: DSAConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every :class:`LayerWeights` field for the whole model (tp = 1)."""
    h, ih = cfg.num_heads, cfg.index_n_heads
    return {
        "q_a_proj": (cfg.q_lora_rank, cfg.hidden_size),
        "q_a_layernorm": (cfg.q_lora_rank,),
        "q_b_proj": (h * cfg.qk_head_dim, cfg.q_lora_rank),
        "kv_a_proj_with_mqa": (cfg.kv_lora_rank + cfg.qk_rope_head_dim, cfg.hidden_size),
        "kv_a_layernorm": (cfg.kv_lora_rank,),
        "kv_b_proj": (h * (cfg.qk_nope_head_dim + cfg.v_head_dim), cfg.kv_lora_rank),
        "o_proj": (cfg.hidden_size, h * cfg.v_head_dim),
        "indexer_wq_b": (ih * cfg.index_head_dim, cfg.q_lora_rank),
        "indexer_wk": (cfg.index_head_dim, cfg.hidden_size),
        "indexer_k_norm_weight": (cfg.index_head_dim,),
        "indexer_k_norm_bias": (cfg.index_head_dim,),
        "indexer_weights_proj": (ih, cfg.hidden_size),
    }


def _local_range(cfg: DSAConfig, field: str, tp_size: int, tp_rank: int) -> tuple[int, int, int] | None:
    """(dim, start, stop) of the TP-local slice of ``field``; None for replicated weights."""
    if field not in _HEAD_SPLIT:
        return None
    dim, width = _HEAD_SPLIT[field]
    hl = cfg.local_heads(tp_size)
    return dim, tp_rank * hl * width(cfg), (tp_rank + 1) * hl * width(cfg)


@dataclasses.dataclass
class LayerWeights:
    """Dense (dequantized) weights of one DSA attention layer on one TP rank.

    Field shapes are those of :func:`full_shapes` except the head-split ones, which hold the
    rank's ``local_heads = num_heads // tp_size`` heads: q_b_proj [Hl * 192, q_lora],
    kv_b_proj [Hl * 256, 512], o_proj [hidden, Hl * 128]. All float tensors of one dtype.
    """

    q_a_proj: torch.Tensor
    q_a_layernorm: torch.Tensor
    q_b_proj: torch.Tensor
    kv_a_proj_with_mqa: torch.Tensor
    kv_a_layernorm: torch.Tensor
    kv_b_proj: torch.Tensor
    o_proj: torch.Tensor
    indexer_wq_b: torch.Tensor
    indexer_wk: torch.Tensor
    indexer_k_norm_weight: torch.Tensor
    indexer_k_norm_bias: torch.Tensor
    indexer_weights_proj: torch.Tensor
    tp_size: int = 1
    tp_rank: int = 0

    def tensors(self) -> dict[str, torch.Tensor]:
        """Field name -> tensor."""
        return {f: getattr(self, f) for f in CHECKPOINT_NAMES}

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "LayerWeights":
        """A copy with every tensor converted (norm weights included)."""
        return dataclasses.replace(self, **{f: t.to(device=device, dtype=dtype) for f, t in self.tensors().items()})

    def check(self, cfg: DSAConfig) -> "LayerWeights":
        """Validate every shape against ``cfg`` and the TP split; returns self.

        Raises ValueError naming the tensor, the expected and the received shape.
        """
        cfg.local_heads(self.tp_size)
        if not 0 <= self.tp_rank < self.tp_size:
            raise ValueError(f"tp_rank: expected 0 <= tp_rank < tp_size={self.tp_size}, got {self.tp_rank}")
        for f, shape in full_shapes(cfg).items():
            want = list(shape)
            rng = _local_range(cfg, f, self.tp_size, self.tp_rank)
            if rng is not None:
                want[rng[0]] = rng[2] - rng[1]
            got = getattr(self, f)
            if not isinstance(got, torch.Tensor) or list(got.shape) != want:
                raise ValueError(f"{CHECKPOINT_NAMES[f]}: expected shape {want} for tp_size={self.tp_size}, "
                                 f"got {list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        return self


# ---------------------------------------------------------------------------------------------
# FP8 block-scaled weights
# ---------------------------------------------------------------------------------------------
def _expand_blocks(scale: torch.Tensor, rows: int, cols: int, block: tuple[int, int]) -> torch.Tensor:
    return scale.float().repeat_interleave(block[0], 0)[:rows].repeat_interleave(block[1], 1)[:, :cols]


def dequantize_block_fp8(weight: torch.Tensor, scale_inv: torch.Tensor, *,
                         block: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Dequantize a block-scaled FP8 weight: ``weight[i, j] * scale_inv[i // b0, j // b1]``.

    Args:
        weight: [R, C] torch.float8_e4m3fn (or any float).
        scale_inv: [ceil(R / b0), ceil(C / b1)] float32 (the checkpoint's ``weight_scale_inv``).
        block: (b0, b1), the config's ``weight_block_size`` (128, 128).
    Returns:
        [R, C] float32, exact (an FP8 value times an fp32 scale is computed in fp32).
    Raises:
        ValueError: shapes that do not match the block grid.
    Semantics: DeepSeek-V3.2-Exp ``inference/model.py`` ``weight_dequant`` (partial edge blocks
    as its ``Linear`` allocates them: ``ceil(out / 128) x ceil(in / 128)`` scales).
    """
    if weight.dim() != 2:
        raise ValueError(f"weight: expected a 2-D tensor, got shape {list(weight.shape)}")
    r, c = weight.shape
    want = (-(-r // block[0]), -(-c // block[1]))
    if tuple(scale_inv.shape) != want:
        raise ValueError(f"scale_inv: expected shape {list(want)} for weight {[r, c]} and block {list(block)}, "
                         f"got {list(scale_inv.shape)}")
    return weight.float() * _expand_blocks(scale_inv, r, c, block)


def quantize_block_fp8(weight: torch.Tensor, *, block: tuple[int, int] = (128, 128)
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a weight to e4m3fn with one fp32 scale per block (amax / 448, as DeepSeek's
    checkpoint conversion does). Inverse of :func:`dequantize_block_fp8` up to FP8 rounding.

    Args:
        weight: [R, C] float.
        block: (b0, b1).
    Returns:
        (fp8 [R, C] torch.float8_e4m3fn, scale_inv [ceil(R/b0), ceil(C/b1)] float32).
    """
    r, c = weight.shape
    nb0, nb1 = -(-r // block[0]), -(-c // block[1])
    w = weight.float()
    padded = torch.zeros(nb0 * block[0], nb1 * block[1], dtype=torch.float32, device=w.device)
    padded[:r, :c] = w
    amax = padded.view(nb0, block[0], nb1, block[1]).abs().amax(dim=(1, 3)).clamp_min(1e-12)
    scale = amax / 448.0
    q = (w / _expand_blocks(scale, r, c, block)).clamp(-448, 448).to(torch.float8_e4m3fn)
    return q, scale


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def _name_to_file(path: Path) -> dict[str, Path]:
    from safetensors import safe_open

    if path.is_file():
        files = [path]
    elif path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.is_file():
            wm = json.loads(index.read_text())["weight_map"]
            return {n: path / f for n, f in wm.items()}
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"checkpoint: no *.safetensors files in {str(path)!r}")
    else:
        raise FileNotFoundError(f"checkpoint: no file or directory at {str(path)!r}")
    out: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for n in h.keys():
                out[n] = f
    return out


def _read(files: dict[str, Path], name: str, rows: tuple[int, int] | None, cols: tuple[int, int] | None
          ) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(files[name]), framework="pt") as h:
        sl = h.get_slice(name)
        shape = sl.get_shape()
        if len(shape) == 1:
            return sl[:]
        r0, r1 = rows if rows else (0, shape[0])
        c0, c1 = cols if cols else (0, shape[1])
        return sl[r0:r1, c0:c1]


def load_layer_weights(
    path: str | Path,
    cfg: DSAConfig,
    *,
    layer: int = 0,
    tp_size: int = 1,
    tp_rank: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> LayerWeights:
    """Load one layer's attention weights for one TP rank from a safetensors checkpoint.

    Args:
        path: a ``.safetensors`` file, or a directory of them (with or without the HF
            ``model.safetensors.index.json``).
        cfg: model config (shapes, ``weight_block_size``).
        layer: layer index in the names ``model.layers.{layer}.self_attn.*``.
        tp_size, tp_rank: tensor-parallel split (only the rank's slice is read from disk,
            rounded out to whole FP8 blocks).
        dtype, device: of the returned tensors (FP8 weights are dequantized in float32 first).
    Returns:
        :class:`LayerWeights`, shape-checked.
    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        KeyError: a required tensor is missing (the message names it).
        ValueError: a tensor with the wrong shape, or a bad TP split.
    Semantics: tensor names and FP8 layout of the Hugging Face DeepSeek-V3.2 checkpoint;
    dequantization as DeepSeek's ``weight_dequant``.
    """
    cfg.local_heads(tp_size)
    if not 0 <= tp_rank < tp_size:
        raise ValueError(f"tp_rank: expected 0 <= tp_rank < tp_size={tp_size}, got {tp_rank}")
    files = _name_to_file(Path(path))
    prefix = layer_prefix(layer)
    block = tuple(cfg.weight_block_size or (128, 128))
    shapes = full_shapes(cfg)
    out: dict[str, torch.Tensor] = {}
    for field, short in CHECKPOINT_NAMES.items():
        name = prefix + short
        if name not in files:
            raise KeyError(f"checkpoint {str(path)!r}: missing tensor {name!r}")
        rng = _local_range(cfg, field, tp_size, tp_rank)
        sl = [None, None]
        if rng is not None:
            sl[rng[0]] = (rng[1], rng[2])
        scale_name = _scale_name(name)
        if scale_name in files:
            # read whole blocks around the slice, dequantize, then trim
            full = shapes[field]
            brows = [None, None]
            for d in range(2):
                if sl[d] is not None:
                    b0, b1 = sl[d][0] // block[d], -(-sl[d][1] // block[d])
                    brows[d] = (b0, b1)
                    sl[d] = (b0 * block[d], min(b1 * block[d], full[d]))
            w = _read(files, name, sl[0], sl[1])
            s = _read(files, scale_name, brows[0], brows[1])
            t = dequantize_block_fp8(w, s, block=block)
            if rng is not None:
                d, start, stop = rng
                off = start - sl[d][0]
                t = t.narrow(d, off, stop - start)
        else:
            t = _read(files, name, sl[0], sl[1]).float()
        out[field] = t.to(device=device, dtype=dtype).contiguous()
    return LayerWeights(**out, tp_size=tp_size, tp_rank=tp_rank).check(cfg)


# ---------------------------------------------------------------------------------------------
# random weights
# ---------------------------------------------------------------------------------------------
def _gen(seed: int, *key: object) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(":".join(map(str, (seed,) + key)).encode()))


def random_layer_weights(cfg: DSAConfig, *, seed: int = 0, tp_size: int = 1, tp_rank: int = 0,
                         dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> LayerWeights:
    """Seeded random weights of one layer for one TP rank (no checkpoint needed).

    Linear weights are N(0, 1/in_features) (activations keep unit scale), RMSNorm weights
    1 + N(0, 0.1^2), the indexer LayerNorm bias N(0, 0.1^2). Head-split weights are drawn per
    head from a generator keyed by (seed, tensor, head), so a head has the same values at every
    tp_size: the TP-local slice of ``random_layer_weights(tp_size=1)`` equals
    ``random_layer_weights(tp_size, tp_rank)``. Only the rank's heads are generated.

    Raises ValueError for a bad TP split.
    """
    hl = cfg.local_heads(tp_size)
    if not 0 <= tp_rank < tp_size:
        raise ValueError(f"tp_rank: expected 0 <= tp_rank < tp_size={tp_size}, got {tp_rank}")
    shapes = full_shapes(cfg)
    out: dict[str, torch.Tensor] = {}
    for field, shape in shapes.items():
        if field in ("q_a_layernorm", "kv_a_layernorm", "indexer_k_norm_weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=_gen(seed, field))
        elif field == "indexer_k_norm_bias":
            t = 0.1 * torch.randn(shape, generator=_gen(seed, field))
        elif field in _HEAD_SPLIT:
            dim, width = _HEAD_SPLIT[field]
            w = width(cfg)
            fan_in = shape[1]
            per_head = list(shape)
            per_head[dim] = w
            heads = [torch.randn(per_head, generator=_gen(seed, field, h)) * fan_in**-0.5
                     for h in range(tp_rank * hl, (tp_rank + 1) * hl)]
            t = torch.cat(heads, dim=dim)
        else:
            t = torch.randn(shape, generator=_gen(seed, field)) * shape[1] ** -0.5
        out[field] = t.to(device=device, dtype=dtype)
    return LayerWeights(**out, tp_size=tp_size, tp_rank=tp_rank).check(cfg)


def checkpoint_tensors(weights: LayerWeights, cfg: DSAConfig, *, layer: int = 0, fp8: bool = True
                       ) -> dict[str, torch.Tensor]:
    """Checkpoint tensors (DeepSeek-V3.2 names and storage dtypes) of full (tp_size 1) weights.

    FP8 weights (``FP8_FIELDS``) become e4m3fn + fp32 ``weight_scale_inv`` per
    ``cfg.weight_block_size`` block when ``fp8``; RMSNorm weights and ``weights_proj`` are bf16,
    the indexer LayerNorm fp32, as in the released checkpoint.

    Raises ValueError when ``weights`` is a TP slice.
    """
    if weights.tp_size != 1:
        raise ValueError(f"weights: expected full weights (tp_size 1), got tp_size {weights.tp_size}")
    weights.check(cfg)
    block = tuple(cfg.weight_block_size or (128, 128))
    prefix = layer_prefix(layer)
    out: dict[str, torch.Tensor] = {}
    for field, short in CHECKPOINT_NAMES.items():
        t = getattr(weights, field).float().cpu()
        name = prefix + short
        if field in FP8_FIELDS and fp8:
            q, s = quantize_block_fp8(t, block=block)
            out[name] = q.contiguous()
            out[_scale_name(name)] = s.contiguous()
        elif field.startswith("indexer_k_norm"):
            out[name] = t.contiguous()
        else:
            out[name] = t.to(torch.bfloat16).contiguous()
    return out
