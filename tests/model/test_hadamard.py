"""The indexer's Hadamard rotation: Sylvester order, orthogonal with the n^-0.5 scale, q.k kept."""

from __future__ import annotations

import pytest
import torch

from rocm_dsa.model.hadamard import hadamard_matrix, hadamard_transform


@pytest.mark.parametrize("n", [1, 2, 16, 128])
def test_sylvester_entries_and_orthogonality(n):
    h = hadamard_matrix(n, dtype=torch.float64)
    i = torch.arange(n)
    # Sylvester / natural (Walsh) order: H[i, j] = (-1)^popcount(i & j) / sqrt(n)
    bits = (i.unsqueeze(1) & i.unsqueeze(0))
    parity = torch.zeros_like(bits)
    for b in range(8):
        parity ^= (bits >> b) & 1
    want = (1 - 2 * parity).double() * n**-0.5
    assert torch.equal(h, want)
    assert torch.equal(h, h.T)
    assert torch.allclose(h @ h.T, torch.eye(n, dtype=torch.float64), atol=1e-12)


def test_transform_preserves_dot_products_before_quantization():
    q = torch.randn(64, 128) * 3
    k = torch.randn(300, 128)
    k[:, 5] += 40  # an outlier channel, what the rotation spreads out
    hq, hk = hadamard_transform(q), hadamard_transform(k)
    assert torch.allclose(hq @ hk.T, q @ k.T, rtol=1e-4, atol=1e-3)
    assert torch.allclose(hk.norm(dim=-1), k.norm(dim=-1), rtol=1e-5)
    assert hk.abs().amax() < 0.5 * k.abs().amax()  # outlier spread over all dims
    assert torch.allclose(hadamard_transform(hk), k, atol=1e-4)  # self-inverse


def test_transform_matches_fast_hadamard_semantics():
    """fast_hadamard_transform(x, scale) = x @ H_sylvester * scale: e_0 -> constant row, e_1 -> +-."""
    e = torch.eye(128)
    out = hadamard_transform(e[:2])
    assert torch.allclose(out[0], torch.full((128,), 128**-0.5))
    assert torch.allclose(out[1], torch.tensor([1.0, -1.0] * 64) * 128**-0.5)
    x = torch.randn(3, 4, 128, dtype=torch.bfloat16)
    y = hadamard_transform(x, scale=1.0)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.allclose(y, x.float() @ hadamard_matrix(128, scale=1.0), atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="power of two"):
        hadamard_matrix(96)
    with pytest.raises(ValueError, match="power of two"):
        hadamard_transform(torch.randn(2, 96))
    with pytest.raises(TypeError, match="x"):
        hadamard_transform(torch.ones(2, 128, dtype=torch.int32))
