"""Triton kernel tests: on a machine without a GPU they run in Triton's interpreter.

``TRITON_INTERPRET`` is read when a kernel is decorated (``@triton.jit``), i.e. when a kernel
module is first imported, so it is set here, at conftest import, before any test imports
``rocm_dsa.triton_kernels``. On a GPU machine the kernels compile for the device instead.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device() -> str:
    """Where kernel tests allocate: the GPU when there is one, else the CPU (interpreter)."""
    return DEVICE
