"""Shared test settings: deterministic seeds, a small hypothesis profile, the FP8 dtype list.

Tests of op semantics pass ``provider="reference"`` explicitly, so a ``ROCM_DSA_BACKEND`` set
in the environment does not change what they check. GPU tests skip with a reason when no
device is present.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    # Triton kernels run in the interpreter on CPU machines. Triton reads this when it is first
    # imported, so it must be set here, before any test module (or plugin) imports triton.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

# Small, deterministic property tests: CI is a 2-core machine.
settings.register_profile(
    "rocm_dsa",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("ROCM_DSA_HYPOTHESIS_PROFILE", "rocm_dsa"))

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e4m3fnuz)


@pytest.fixture(autouse=True)
def _seed():
    """Seed torch per test so every test sees its own fixed random inputs."""
    torch.manual_seed(0)
    yield


@pytest.fixture(params=FP8_DTYPES, ids=["e4m3fn", "e4m3fnuz"])
def fp8_dtype(request) -> torch.dtype:
    """Both FP8 e4m3 encodings: OCP e4m3fn and gfx942's e4m3fnuz."""
    return request.param
