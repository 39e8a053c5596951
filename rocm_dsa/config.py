"""Model configuration for DSA models, read from a Hugging Face ``config.json``.

One loader serves every DeepSeek-Sparse-Attention model: DeepSeek-V3.2 (the built-in
preset) and relatives such as GLM-5.x (``glm_moe_dsa``: 32 indexer heads, interleaved indexer
RoPE, indexer re-used across layers). Nothing here assumes V3.2's numbers; they are read from
the config's fields.

Semantics: field names follow the published HF configs; the derived MLA softmax scale follows
DeepSeek's inference code (``MLA.__init__`` in DeepSeek-V3.2's ``inference/model.py``):
``qk_head_dim ** -0.5 * mscale ** 2`` with ``mscale = 0.1 * mscale_all_dim * ln(factor) + 1``
when YaRN extends the context beyond ``original_max_position_embeddings``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DSAConfig", "RopeScaling", "deepseek_v32"]


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """YaRN RoPE scaling (DeepSeek's ``rope_scaling`` block). ``factor == 1`` means none."""

    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 1.0

    @staticmethod
    def yarn_mscale(factor: float, mscale: float) -> float:
        """DeepSeek's ``yarn_get_mscale``: ``0.1 * mscale * ln(factor) + 1`` (1 when factor <= 1)."""
        return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


@dataclasses.dataclass(frozen=True)
class DSAConfig:
    """Attention-side configuration of a DSA model (MLA + lightning indexer).

    All sizes are element counts. ``num_heads`` is the model's full head count; TP-local
    counts are ``num_heads // tp_size`` (:meth:`local_heads`).
    """

    model_type: str = "deepseek_v32"
    hidden_size: int = 7168
    num_layers: int = 61
    num_heads: int = 128
    q_lora_rank: int = 1536
    kv_lora_rank: int = 512
    qk_nope_head_dim: int = 128
    qk_rope_head_dim: int = 64
    v_head_dim: int = 128
    index_n_heads: int = 64
    index_head_dim: int = 128
    index_topk: int = 2048
    #: the indexer runs on every ``index_topk_freq``-th layer and is re-used in between (GLM-5).
    index_topk_freq: int = 1
    #: False = half-split (NeoX) RoPE in the indexer (DeepSeek-V3.2); True = interleaved (GLM-5).
    indexer_rope_interleave: bool = False
    max_position_embeddings: int = 163840
    rope_theta: float = 10000.0
    #: DeepSeek-V3.2's YaRN block (factor 40 over 4096 positions); ``from_dict`` replaces it with
    #: the config's own block, or with no scaling when the config has none.
    rope_scaling: RopeScaling = dataclasses.field(default_factory=lambda: RopeScaling(
        factor=40.0, original_max_position_embeddings=4096, beta_fast=32.0, beta_slow=1.0,
        mscale=1.0, mscale_all_dim=1.0))
    rms_norm_eps: float = 1e-6
    #: LayerNorm eps of the indexer key norm (DeepSeek: 1e-6).
    indexer_norm_eps: float = 1e-6
    #: weights stored as FP8 with one fp32 scale per (block x block) tile; None = bf16 weights.
    weight_block_size: tuple[int, int] | None = (128, 128)
    #: activation scale format: "ue8m0" = power-of-two scales (DeepSeek-V3.2), None = plain fp32.
    scale_fmt: str | None = "ue8m0"

    # ---- derived -------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        """Per-head query/key width of the un-absorbed MLA: nope + rope (192 for V3.2)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Latent-cache row width: ``kv_lora_rank + qk_rope_head_dim`` (576 for V3.2)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        """MLA softmax scale, also valid for the absorbed 576-dim form (0.1352338 for V3.2)."""
        scale = self.qk_head_dim**-0.5
        rs = self.rope_scaling
        if self.max_position_embeddings > rs.original_max_position_embeddings and rs.factor > 1:
            m = RopeScaling.yarn_mscale(rs.factor, rs.mscale_all_dim)
            scale *= m * m
        return scale

    @property
    def indexer_softmax_scale(self) -> float:
        """Indexer score scale per dimension: ``index_head_dim ** -0.5``."""
        return self.index_head_dim**-0.5

    @property
    def indexer_head_scale(self) -> float:
        """Indexer head-weight scale: ``index_n_heads ** -0.5``."""
        return self.index_n_heads**-0.5

    def local_heads(self, tp_size: int) -> int:
        """MLA heads on one TP rank. Raises ValueError if ``tp_size`` does not divide them."""
        if tp_size < 1 or self.num_heads % tp_size:
            divisors = [d for d in range(1, self.num_heads + 1) if self.num_heads % d == 0]
            raise ValueError(
                f"tp_size: expected a divisor of num_heads={self.num_heads} (one of {divisors}), got {tp_size}"
            )
        return self.num_heads // tp_size

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "DSAConfig":
        """Build from the fields of an HF ``config.json`` dict; absent fields keep V3.2 values.

        Raises ValueError when the dict has no attention fields of a DSA model
        (``index_n_heads`` / ``kv_lora_rank``).
        """
        missing = [k for k in ("kv_lora_rank", "index_n_heads") if k not in cfg]
        if missing:
            raise ValueError(
                f"config: not a DSA model config, missing {missing} "
                f"(model_type={cfg.get('model_type')!r})"
            )
        d = cls()
        rs_raw = cfg.get("rope_scaling") or {}
        rope_scaling = RopeScaling(
            factor=float(rs_raw.get("factor", 1.0)),
            original_max_position_embeddings=int(
                rs_raw.get("original_max_position_embeddings", cfg.get("max_position_embeddings", 4096))
            ),
            beta_fast=float(rs_raw.get("beta_fast", 32)),
            beta_slow=float(rs_raw.get("beta_slow", 1)),
            mscale=float(rs_raw.get("mscale", 1.0)),
            mscale_all_dim=float(rs_raw.get("mscale_all_dim", 0.0)),
        )
        q = cfg.get("quantization_config") or {}
        wbs = q.get("weight_block_size")
        return cls(
            model_type=cfg.get("model_type", d.model_type),
            hidden_size=int(cfg.get("hidden_size", d.hidden_size)),
            num_layers=int(cfg.get("num_hidden_layers", d.num_layers)),
            num_heads=int(cfg.get("num_attention_heads", d.num_heads)),
            q_lora_rank=int(cfg.get("q_lora_rank") or d.q_lora_rank),
            kv_lora_rank=int(cfg["kv_lora_rank"]),
            qk_nope_head_dim=int(cfg.get("qk_nope_head_dim", d.qk_nope_head_dim)),
            qk_rope_head_dim=int(cfg.get("qk_rope_head_dim", d.qk_rope_head_dim)),
            v_head_dim=int(cfg.get("v_head_dim", d.v_head_dim)),
            index_n_heads=int(cfg["index_n_heads"]),
            index_head_dim=int(cfg.get("index_head_dim", d.index_head_dim)),
            index_topk=int(cfg.get("index_topk", d.index_topk)),
            index_topk_freq=int(cfg.get("index_topk_freq", 1)),
            indexer_rope_interleave=bool(cfg.get("indexer_rope_interleave", False)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", d.max_position_embeddings)),
            rope_theta=float(cfg.get("rope_theta", d.rope_theta)),
            rope_scaling=rope_scaling,
            rms_norm_eps=float(cfg.get("rms_norm_eps", d.rms_norm_eps)),
            weight_block_size=tuple(wbs) if wbs else None,
            scale_fmt=q.get("scale_fmt"),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> "DSAConfig":
        """Load an HF ``config.json`` (a file path, or a model directory holding one).

        Raises FileNotFoundError when the file is absent, ValueError when it is not a DSA config.
        """
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        if not p.is_file():
            raise FileNotFoundError(f"config path: no config.json at {str(p)!r}")
        try:
            cfg = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config path: {str(p)!r} is not valid JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise ValueError(f"config path: {str(p)!r} holds a JSON {type(cfg).__name__}, expected an object")
        return cls.from_dict(cfg)

    def replace(self, **changes: Any) -> "DSAConfig":
        """A copy with some fields changed (for small test models)."""
        return dataclasses.replace(self, **changes)


def deepseek_v32() -> DSAConfig:
    """The DeepSeek-V3.2 preset, read from the model's published ``config.json`` fields
    (shipped as ``rocm_dsa/data/deepseek_v32_config.json``)."""
    text = resources.files("rocm_dsa").joinpath("data/deepseek_v32_config.json").read_text()
    return DSAConfig.from_dict(json.loads(text))
