"""Small DSA configs and a random DeepSeek-V3.2-style checkpoint for the model tests.

The op interface fixes kv_lora 512, rope 64 and the indexer head dim 128; hidden size, q_lora,
head counts shrink so that a layer runs in milliseconds on a CPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rocm_dsa.config import deepseek_v32

REPO = Path(__file__).resolve().parents[2]
SMALL = dict(hidden_size=256, q_lora_rank=128, num_heads=4, index_n_heads=8)


@pytest.fixture(scope="session")
def checkpoint_script():
    """scripts/make_random_checkpoint.py as a module (a script, not a package module): call
    ``.main([...argv])`` to write a checkpoint directory."""
    spec = importlib.util.spec_from_file_location("make_random_checkpoint",
                                                  REPO / "scripts" / "make_random_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def small_cfg():
    """DeepSeek-V3.2 attention with small hidden / q_lora / head counts (YaRN, scales unchanged)."""
    return deepseek_v32().replace(**SMALL)
