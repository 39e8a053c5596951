"""A model of aiter's ragged ``_fp8_mqa_logits_kernel`` tile walk, shared by the vendor tests."""

from __future__ import annotations

import torch


def aiter_ragged_model(full: torch.Tensor, start: torch.Tensor, end: torch.Tensor, block: int) -> torch.Tensor:
    """What aiter's ``_fp8_mqa_logits_kernel`` writes, from exact logits ``full`` [T, N] (no mask):
    full tiles from ``start`` up to floor(end/block)*block, then one tail tile whose key and
    output pointers continue from the last full tile while its mask uses the aligned offsets."""
    t, n = full.shape
    out = torch.full_like(full, float("-inf"))
    for r in range(t):
        s, e = int(max(start[r], 0)), int(min(end[r], n))
        unmasked = e // block * block
        ptr = s
        for _ in range(s, unmasked, block):
            for c in range(ptr, ptr + block):
                if c < n:  # (a key read past N is out of bounds on the GPU)
                    out[r, c] = full[r, c]
            ptr += block
        if unmasked != e:
            for j in range(block):
                logical, c = unmasked + j, ptr + j
                if s <= logical < e and c < n:
                    out[r, c] = full[r, c] if logical < n else 0.0
    return out
