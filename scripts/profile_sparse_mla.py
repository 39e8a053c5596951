#!/usr/bin/env python3
"""Drive the Triton sparse MLA kernels once per case, for a profiler (Nsight Compute on the H200).

Cases (bf16 latent cache, top-k 2048, random valid indices): decode B=128 H=16 and H=128 at a
32K context, prefill T=1024 H=128. Each case runs twice (the first call compiles); profile the
second launch, e.g.:

    ncu --clock-control none --launch-skip 1 --launch-count 1 -k regex:_fwd_sparse_mla \\
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \\
        --section WarpStateStats --section LaunchStats python3 scripts/profile_sparse_mla.py --case decode16

Args: --case decode16 | decode128 | prefill128; --config '{"BLOCK_K": 32, ...}' overrides.
"""

from __future__ import annotations

import argparse
import json

import torch

from rocm_dsa.platform import detect
from rocm_dsa.triton_kernels.sparse_mla import sparse_mla_decode, sparse_mla_prefill

SM_SCALE = 0.1352338


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=("decode16", "decode128", "prefill128"), required=True)
    p.add_argument("--config", default="", help="JSON dict of config overrides")
    a = p.parse_args()
    cfg = json.loads(a.config) if a.config else None
    arch = detect().arch
    torch.manual_seed(0)
    ctx, topk = 32768, 2048
    if a.case.startswith("decode"):
        b, h = 128, (16 if a.case == "decode16" else 128)
        kv = torch.randn(b * ctx // 64, 64, 1, 576, device="cuda").bfloat16()
        base = (torch.arange(b, device="cuda") * ctx)[:, None, None]
        idx = (base + torch.randint(0, ctx, (b, 1, topk), device="cuda")).int()
        q = torch.randn(b, 1, h, 576, device="cuda").bfloat16()
        for _ in range(2):
            sparse_mla_decode(q, kv, idx, SM_SCALE, 512, torch.float8_e4m3fn, arch=arch, config=cfg)
    else:
        t, h = 1024, 128
        kv = torch.randn(65536, 1, 576, device="cuda").bfloat16()
        idx = torch.randint(0, 65536, (t, 1, topk), device="cuda").int()
        q = torch.randn(t, h, 576, device="cuda").bfloat16()
        for _ in range(2):
            sparse_mla_prefill(q, kv, idx, SM_SCALE, 512, torch.float8_e4m3fn, arch=arch, config=cfg)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
