"""Weight loading for real: scripts/make_random_checkpoint.py writes a DeepSeek-V3.2-style file
(FP8 e4m3fn + fp32 weight_scale_inv per 128x128 block), the loader reads it back exactly."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rocm_dsa.config import DSAConfig
from rocm_dsa.model.weights import (
    CHECKPOINT_NAMES,
    FP8_FIELDS,
    dequantize_block_fp8,
    layer_prefix,
    load_layer_weights,
    random_layer_weights,
)

# sizes that are NOT multiples of 128 (partial edge blocks) and a TP split inside a block
ARGS = ["--hidden", "320", "--heads", "4", "--q-lora", "192", "--index-heads", "4", "--layer", "3", "--seed", "7"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, checkpoint_script):
    out = tmp_path_factory.mktemp("ckpt")
    assert checkpoint_script.main(["--out", str(out), *ARGS]) == 0
    cfg = DSAConfig.from_json(out / "config.json")
    return out, cfg


def _raw(path, name):
    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(name)


def test_checkpoint_names_and_storage(ckpt):
    out, cfg = ckpt
    assert (cfg.hidden_size, cfg.num_heads, cfg.q_lora_rank, cfg.index_n_heads) == (320, 4, 192, 4)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    p = layer_prefix(3)
    assert p == "model.layers.3.self_attn."
    for field, short in CHECKPOINT_NAMES.items():
        assert p + short in names
        scale = p + short[: -len("weight")] + "weight_scale_inv"
        assert (scale in names) == (field in FP8_FIELDS), field
    assert _raw(out / "model.safetensors", p + "q_b_proj.weight").dtype == torch.float8_e4m3fn
    assert _raw(out / "model.safetensors", p + "kv_a_proj_with_mqa.weight_scale_inv").shape == (5, 3)
    assert _raw(out / "model.safetensors", p + "indexer.weights_proj.weight").dtype == torch.bfloat16
    assert _raw(out / "model.safetensors", p + "indexer.k_norm.bias").dtype == torch.float32


def test_fp8_block_dequant_is_exact(ckpt):
    out, cfg = ckpt
    w = load_layer_weights(out, cfg, layer=3)
    f = out / "model.safetensors"
    for field in FP8_FIELDS:
        name = layer_prefix(3) + CHECKPOINT_NAMES[field]
        q = _raw(f, name).float()
        s = _raw(f, name[: -len("weight")] + "weight_scale_inv")
        want = torch.empty_like(q)
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                blk = (slice(i * 128, (i + 1) * 128), slice(j * 128, (j + 1) * 128))
                want[blk] = q[blk] * s[i, j]
        assert torch.equal(getattr(w, field), want), field
        assert torch.equal(dequantize_block_fp8(_raw(f, name), s), want)


def test_round_trip_against_the_random_weights(ckpt):
    out, cfg = ckpt
    orig = random_layer_weights(cfg, seed=7)
    got = load_layer_weights(out, cfg, layer=3)
    f = out / "model.safetensors"
    for field in CHECKPOINT_NAMES:
        a, b = getattr(got, field), getattr(orig, field)
        if field in FP8_FIELDS:
            # FP8 rounding: at most half an e4m3fn ulp of the block's top binade (16 x scale)
            name = layer_prefix(3) + CHECKPOINT_NAMES[field]
            s = _raw(f, name[: -len("weight")] + "weight_scale_inv")
            bound = s.repeat_interleave(128, 0)[: a.shape[0]].repeat_interleave(128, 1)[:, : a.shape[1]] * 16
            assert bool(((a - b).abs() <= bound).all()), field
            assert float((a - b).norm() / b.norm()) < 0.05, field
        elif field.startswith("indexer_k_norm"):
            assert torch.equal(a, b), field  # stored in fp32
        else:
            assert torch.equal(a, b.to(torch.bfloat16).float()), field  # stored in bf16


@pytest.mark.parametrize("tp_size", [2, 4])
def test_tp_slices_equal_the_full_weights(ckpt, tp_size):
    out, cfg = ckpt
    full = load_layer_weights(out, cfg, layer=3)
    hl = cfg.num_heads // tp_size
    for rank in range(tp_size):
        part = load_layer_weights(out, cfg, layer=3, tp_size=tp_size, tp_rank=rank)
        assert part.q_b_proj.shape[0] == hl * 192
        assert torch.equal(part.q_b_proj, full.q_b_proj[rank * hl * 192:(rank + 1) * hl * 192])
        assert torch.equal(part.kv_b_proj, full.kv_b_proj[rank * hl * 256:(rank + 1) * hl * 256])
        assert torch.equal(part.o_proj, full.o_proj[:, rank * hl * 128:(rank + 1) * hl * 128])
        assert torch.equal(part.indexer_wq_b, full.indexer_wq_b)  # the indexer is not split
        assert torch.equal(part.q_a_proj, full.q_a_proj)


def test_random_weights_same_heads_at_every_tp(small_cfg):
    full = random_layer_weights(small_cfg, seed=1)
    part = random_layer_weights(small_cfg, seed=1, tp_size=2, tp_rank=1)
    assert torch.equal(part.kv_b_proj, full.kv_b_proj[512:])
    assert torch.equal(part.o_proj, full.o_proj[:, 256:])
    assert not torch.equal(random_layer_weights(small_cfg, seed=2).q_a_proj, full.q_a_proj)


def test_sharded_directory_with_index(ckpt, tmp_path):
    out, cfg = ckpt
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    names = sorted(tensors)
    shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
    for fn, ns in shards.items():
        save_file({n: tensors[n] for n in ns}, str(tmp_path / fn))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {n: fn for fn, ns in shards.items() for n in ns}}))
    a = load_layer_weights(tmp_path, cfg, layer=3, tp_size=2, tp_rank=1)
    b = load_layer_weights(out / "model.safetensors", cfg, layer=3, tp_size=2, tp_rank=1)
    for field in CHECKPOINT_NAMES:
        assert torch.equal(getattr(a, field), getattr(b, field))


def test_loader_errors(ckpt, tmp_path):
    out, cfg = ckpt
    with pytest.raises(KeyError, match=r"model\.layers\.0\.self_attn\.q_a_proj\.weight"):
        load_layer_weights(out, cfg, layer=0)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        load_layer_weights(tmp_path / "nope", cfg)
    with pytest.raises(ValueError, match="tp_size"):
        load_layer_weights(out, cfg, layer=3, tp_size=3)
    with pytest.raises(ValueError, match="tp_rank"):
        load_layer_weights(out, cfg, layer=3, tp_size=2, tp_rank=2)
    with pytest.raises(ValueError, match="indexer.wq_b.weight"):
        load_layer_weights(out, cfg.replace(index_n_heads=8), layer=3)
    with pytest.raises(ValueError, match="scale_inv"):
        dequantize_block_fp8(torch.zeros(130, 128), torch.ones(1, 1))


def test_bf16_checkpoint_loads_without_scales(tmp_path, checkpoint_script):
    assert checkpoint_script.main(["--out", str(tmp_path), "--hidden", "256", "--heads", "2",
                                          "--q-lora", "128", "--index-heads", "2", "--bf16"]) == 0
    cfg = DSAConfig.from_json(tmp_path / "config.json")
    w = load_layer_weights(tmp_path, cfg)
    orig = random_layer_weights(cfg, seed=0)
    assert torch.equal(w.q_b_proj, orig.q_b_proj.to(torch.bfloat16).float())
