"""DSAConfig: the DeepSeek-V3.2 preset, loading HF config.json files, derived numbers."""

from __future__ import annotations

import json
import math
import shutil
from importlib import resources
from pathlib import Path

import pytest

from rocm_dsa.config import DSAConfig, RopeScaling, deepseek_v32

V32_SOFTMAX_SCALE = 0.1352338  # 192^-0.5 * (0.1 * ln 40 + 1)^2, DESIGN §3


def _packaged_json() -> Path:
    return Path(str(resources.files("rocm_dsa").joinpath("data/deepseek_v32_config.json")))


def _v32_dict() -> dict:
    return json.loads(_packaged_json().read_text())


def test_preset_equals_loading_the_packaged_config(tmp_path):
    preset = deepseek_v32()
    assert preset == DSAConfig.from_json(_packaged_json())
    copy = tmp_path / "config.json"
    shutil.copy(_packaged_json(), copy)
    assert DSAConfig.from_json(copy) == preset
    assert DSAConfig.from_json(tmp_path) == preset  # a model directory holding config.json
    assert DSAConfig.from_json(str(tmp_path)) == preset
    # the class defaults are the same model
    assert DSAConfig() == preset


def test_preset_numbers():
    c = deepseek_v32()
    assert (c.num_heads, c.q_lora_rank, c.kv_lora_rank) == (128, 1536, 512)
    assert (c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim) == (128, 64, 128)
    assert (c.index_n_heads, c.index_head_dim, c.index_topk) == (64, 128, 2048)
    assert (c.num_layers, c.max_position_embeddings, c.hidden_size) == (61, 163840, 7168)
    assert c.qk_head_dim == 192 and c.kv_cache_dim == 576
    assert c.indexer_rope_interleave is False and c.index_topk_freq == 1
    assert c.weight_block_size == (128, 128) and c.scale_fmt == "ue8m0"
    assert c.rope_scaling.factor == 40 and c.rope_scaling.original_max_position_embeddings == 4096
    assert c.indexer_softmax_scale == pytest.approx(128**-0.5)
    assert c.indexer_head_scale == pytest.approx(64**-0.5)


def test_softmax_scale_has_yarn_mscale():
    c = deepseek_v32()
    assert c.softmax_scale == pytest.approx(V32_SOFTMAX_SCALE, abs=1e-6)
    assert c.softmax_scale == pytest.approx(192**-0.5 * (0.1 * math.log(40) + 1) ** 2, rel=1e-12)
    assert abs(c.softmax_scale - 576**-0.5) > 0.09  # FlashMLA's default is wrong for this model


def test_softmax_scale_without_yarn_is_plain():
    d = _v32_dict()
    del d["rope_scaling"]
    c = DSAConfig.from_dict(d)
    assert c.softmax_scale == pytest.approx(192**-0.5, rel=1e-12)
    # HF semantics: a rope_scaling block without mscale_all_dim applies no mscale
    d = _v32_dict()
    del d["rope_scaling"]["mscale_all_dim"]
    assert DSAConfig.from_dict(d).softmax_scale == pytest.approx(192**-0.5, rel=1e-12)


def test_yarn_mscale():
    assert RopeScaling.yarn_mscale(1.0, 1.0) == 1.0
    assert RopeScaling.yarn_mscale(40.0, 1.0) == pytest.approx(0.1 * math.log(40) + 1)
    assert RopeScaling.yarn_mscale(40.0, 0.707) == pytest.approx(0.1 * 0.707 * math.log(40) + 1)


def _glm5_like() -> dict:
    return {
        "architectures": ["GlmMoeDsaForCausalLM"],
        "model_type": "glm_moe_dsa",
        "hidden_size": 6144,
        "num_hidden_layers": 78,
        "num_attention_heads": 64,
        "q_lora_rank": 2048,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 192,
        "qk_rope_head_dim": 64,
        "v_head_dim": 256,
        "index_n_heads": 32,
        "index_head_dim": 128,
        "index_topk": 2048,
        "index_topk_freq": 4,
        "indexer_rope_interleave": True,
        "max_position_embeddings": 202752,
        "rope_theta": 1000000,
        "rms_norm_eps": 1e-5,
    }


def test_glm5_like_config_loads(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_glm5_like()))
    c = DSAConfig.from_json(tmp_path)
    assert c.model_type == "glm_moe_dsa"
    assert c.index_n_heads == 32 and c.indexer_rope_interleave is True and c.index_topk_freq == 4
    assert c.qk_nope_head_dim == 192 and c.v_head_dim == 256 and c.qk_head_dim == 256
    assert c.num_heads == 64 and c.num_layers == 78 and c.kv_cache_dim == 576
    assert c.rope_theta == 1e6 and c.rms_norm_eps == 1e-5
    assert c.rope_scaling.factor == 1.0  # no YaRN block -> no scaling
    assert c.softmax_scale == pytest.approx(256**-0.5, rel=1e-12)
    assert c.weight_block_size is None and c.scale_fmt is None  # bf16 checkpoint
    assert c.indexer_head_scale == pytest.approx(32**-0.5)


@pytest.mark.parametrize("missing", ["kv_lora_rank", "index_n_heads"])
def test_non_dsa_config_raises(tmp_path, missing):
    d = _v32_dict()
    del d[missing]
    with pytest.raises(ValueError, match=missing):
        DSAConfig.from_dict(d)
    llama = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32}
    (tmp_path / "config.json").write_text(json.dumps(llama))
    with pytest.raises(ValueError, match="not a DSA model config.*llama"):
        DSAConfig.from_json(tmp_path / "config.json")


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DSAConfig.from_json(tmp_path)  # a directory without config.json
    with pytest.raises(FileNotFoundError):
        DSAConfig.from_json(tmp_path / "nope.json")


@pytest.mark.parametrize("tp,heads", [(1, 128), (2, 64), (4, 32), (8, 16), (16, 8)])
def test_local_heads(tp, heads):
    assert deepseek_v32().local_heads(tp) == heads


@pytest.mark.parametrize("tp", [0, -1, 3, 256])
def test_local_heads_rejects_non_divisors(tp):
    with pytest.raises(ValueError, match="tp_size"):
        deepseek_v32().local_heads(tp)


def test_replace_and_frozen():
    c = deepseek_v32()
    small = c.replace(num_heads=16, index_n_heads=8)
    assert small.num_heads == 16 and small.index_n_heads == 8 and c.num_heads == 128
    assert small.softmax_scale == c.softmax_scale
    with pytest.raises(Exception):
        c.num_heads = 1  # type: ignore[misc]
