#!/usr/bin/env python3
"""Write a DeepSeek-V3.2-style safetensors checkpoint of ONE attention layer with random values.

The file uses the Hugging Face DeepSeek-V3.2 tensor names (``model.layers.{L}.self_attn.*``) and
storage: FP8 e4m3fn weights with an fp32 ``weight_scale_inv`` per 128 x 128 block for the
projections, bf16 RMSNorm weights and ``weights_proj``, fp32 indexer LayerNorm (see
:mod:`rocm_dsa.model.weights`). Values come from ``random_layer_weights`` (seeded), then FP8
block quantization. A matching ``config.json`` is written next to it, so

    python scripts/make_random_checkpoint.py --out /tmp/ckpt --hidden 512 --heads 8
    rocm-dsa run --checkpoint /tmp/ckpt --tp 1

loads it for real. Full DeepSeek-V3.2 sizes (the default) make a ~190 MiB file (one layer, FP8).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory (model.safetensors + config.json)")
    ap.add_argument("--layer", type=int, default=0, help="layer index used in the tensor names")
    ap.add_argument("--config", type=Path, default=None, help="base HF config.json (default: DeepSeek-V3.2)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden_size (DeepSeek-V3.2: 7168)")
    ap.add_argument("--heads", type=int, default=None, help="num_attention_heads (128)")
    ap.add_argument("--q-lora", type=int, default=None, help="q_lora_rank (1536)")
    ap.add_argument("--index-heads", type=int, default=None, help="index_n_heads (64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="store projections in bf16 instead of FP8 + block scales "
                    "(the loader takes both)")
    args = ap.parse_args(argv)

    from safetensors.torch import save_file

    from rocm_dsa.config import DSAConfig
    from rocm_dsa.model.weights import checkpoint_tensors, random_layer_weights

    if args.config is not None:
        raw = json.loads(Path(args.config).read_text())
    else:
        raw = json.loads(resources.files("rocm_dsa").joinpath("data/deepseek_v32_config.json").read_text())
    for key, val in (("hidden_size", args.hidden), ("num_attention_heads", args.heads),
                     ("num_key_value_heads", args.heads), ("q_lora_rank", args.q_lora),
                     ("index_n_heads", args.index_heads)):
        if val is not None:
            if val < 1:
                ap.error(f"--{key}: expected >= 1, got {val}")
            raw[key] = val
    raw["num_hidden_layers"] = max(int(raw.get("num_hidden_layers", 1)), args.layer + 1)
    cfg = DSAConfig.from_dict(raw)
    weights = random_layer_weights(cfg, seed=args.seed)
    tensors = checkpoint_tensors(weights, cfg, layer=args.layer, fp8=not args.bf16)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    (args.out / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {len(tensors)} tensors ({size / 2**20:.1f} MiB) for layer {args.layer} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
