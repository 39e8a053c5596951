"""The portable paths of hip/indexer_mfma.hip and hip/sparse_mla_decode.hip, and hip/topk.hip, EXECUTED on the CPU
(host emulation: tests/hip/emu_host.cpp compiled with -DDSA_HOST_EMU, one std::thread per GPU
thread) against the reference provider, with wave64 (the C-fragment layout of the MFMA paths,
so the shared epilogues run exactly as on gfx942) and wave32 (NVIDIA's).

What this executes: the kernels' own launchers, grid decode, page-table lookups and bounds
checks, causal MTP masks, -inf fills, -1 / out-of-range slot masking, FP8 record dequantization,
the partial-S^T reduction, online softmax, split-K and the LSE merge. What it cannot: the MFMA
instructions themselves (their layouts: tests/hip/test_mfma_layouts.py; their compilation:
tests/hip/test_hip_compile_report.py). Full-size runs on a GPU: scripts/hip_mfma_check.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.cache import IndexerKCache, MLAKVCache
from rocm_dsa.hipext import source_dir
from rocm_dsa.testing import assert_close

_CXX = next((c for c in ("c++", "g++", "clang++-19", "clang++") if shutil.which(c)), None)
pytestmark = pytest.mark.skipif(_CXX is None, reason="no host C++ compiler (c++/g++/clang++) on this machine")

SM_SCALE = 0.1352338


@pytest.fixture(scope="module", params=[64, 32], ids=["wave64", "wave32"])
def emu(request, tmp_path_factory) -> tuple[int, Path]:
    wave = request.param
    exe = tmp_path_factory.mktemp(f"emu{wave}") / "emu_host"
    src = Path(__file__).with_name("emu_host.cpp")
    cmd = [_CXX, "-std=c++17", "-O1", "-DDSA_HOST_EMU", f"-DDSA_EMU_WAVE={wave}", "-pthread", "-x", "c++",
           f"-I{source_dir()}", str(src), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return wave, exe


def _run(exe: Path, mode: str, d: Path) -> None:
    r = subprocess.run([str(exe), mode, str(d)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


INDEXER_CASES = {
    # name: (B, next_n, H, page_size, max_pages, pages_per_wg, context_lens, fp8)
    "H64-mtp2-ps16": (2, 2, 64, 16, 6, 2, [6 * 16 - 5, 20], torch.float8_e4m3fn),
    "H16-decode-ps64-fnuz": (3, 1, 16, 64, 3, 1, [130, 1, 64], torch.float8_e4m3fnuz),
    "H32-mtp3-short": (2, 3, 32, 32, 4, 3, [2, 100], torch.float8_e4m3fn),
}


@pytest.mark.parametrize("case", sorted(INDEXER_CASES))
def test_paged_indexer_portable_path(emu, case, tmp_path):
    wave, exe = emu
    b, next_n, h, ps, maxp, ppw, lens_l, fp8 = INDEXER_CASES[case]
    npages = b * maxp + 3
    cache = IndexerKCache(npages, page_size=ps, fp8_dtype=fp8)
    cache.store(torch.randn(npages * ps, 128), torch.arange(npages * ps), provider="reference")
    q = (torch.randn(b, next_n, h, 128) * 2).to(fp8)
    w = torch.randn(b * next_n, h) * 0.1
    lens = torch.tensor(lens_l, dtype=torch.int32)
    bt = torch.randperm(npages)[: b * maxp].view(b, maxp).to(torch.int32)
    # pages past each request's context hold garbage ids: never read
    for i, n in enumerate(lens_l):
        bt[i, -(-n // ps):] = 10**6
    want = ops.indexer_logits_paged(q, cache, w, lens, bt, provider="reference")
    (tmp_path / "meta.txt").write_text(f"{b} {next_n} {h} {ps} {maxp} {npages} {int(fp8 == torch.float8_e4m3fnuz)} {ppw}")
    q.view(torch.uint8).numpy().tofile(tmp_path / "q.bin")
    cache.buffer.numpy().tofile(tmp_path / "kv.bin")
    w.numpy().tofile(tmp_path / "w.bin")
    lens.numpy().tofile(tmp_path / "lens.bin")
    bt.numpy().tofile(tmp_path / "bt.bin")
    _run(exe, "indexer", tmp_path)
    got = torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np.float32)).view_as(want)
    assert_close(got, want, dtype=torch.float32, atol=1e-4, rtol=1e-4, name=f"logits ({case}, wave{wave})")


DECODE_CASES = {
    # name: (B, s_q, H, topk, kv, fp8, num_splits)
    "H16-mtp2-bf16-split2": (2, 2, 16, 40, "bf16", torch.float8_e4m3fn, 2),
    "H32-fp8-split4-empty-split": (1, 1, 32, 70, "fp8", torch.float8_e4m3fn, 4),
    "H64-fp8-fnuz-nosplit": (2, 1, 64, 33, "fp8", torch.float8_e4m3fnuz, 1),
    "H128-bf16-split3": (1, 1, 128, 48, "bf16", torch.float8_e4m3fn, 3),
}


@pytest.mark.parametrize("case", sorted(DECODE_CASES))
def test_sparse_mla_decode_portable_path(emu, case, tmp_path):
    wave, exe = emu
    b, s_q, h, topk, kv, fp8, splits = DECODE_CASES[case]
    if wave == 32 and case == "H128-bf16-split3":
        pytest.skip("covered by wave64; keeps the CPU budget small")
    cache = MLAKVCache(30, page_size=4, kv_dtype=kv, fp8_dtype=fp8)
    n = cache.num_pages * 4
    cache.store(torch.randn(n, 512), torch.randn(n, 64), torch.arange(n), provider="reference")
    q = torch.randn(b, s_q, h, 576).bfloat16()
    idx = torch.randint(0, n, (b, s_q, topk), dtype=torch.int32)
    idx[0, 0, ::3] = -1
    idx[0, 0, 1] = n + 5  # out of range: masked
    if s_q > 1:
        idx[0, 1, :] = -1  # no valid slot: out 0, lse +inf
    want_out, want_lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
    (tmp_path / "meta.txt").write_text(f"{b} {s_q} {h} {topk} {n} {int(kv == 'fp8')} "
                                       f"{int(fp8 == torch.float8_e4m3fnuz)} {splits} {SM_SCALE}")
    q.view(torch.int16).numpy().tofile(tmp_path / "q.bin")
    cache.buffer.view(torch.uint8).numpy().tofile(tmp_path / "kv.bin")
    idx.numpy().tofile(tmp_path / "idx.bin")
    _run(exe, "decode", tmp_path)
    out = torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np.int16)).view(torch.bfloat16).view_as(want_out)
    lse = torch.from_numpy(np.fromfile(tmp_path / "lse.bin", dtype=np.float32)).view_as(want_lse)
    assert not torch.isnan(out.float()).any()
    assert_close(out, want_out, dtype=torch.bfloat16, name=f"out ({case}, wave{wave})")
    assert_close(lse, want_lse, dtype=torch.float32, atol=1e-4, rtol=1e-5, name=f"lse ({case}, wave{wave})")
    if s_q > 1:
        assert bool((out[0, 1].float() == 0).all()) and bool(torch.isposinf(lse[0, :, 1]).all())


TOPK_CASES = {
    # name: (rows, cols, k, cap, block, zero_prefix, splits): the selection paths of hip/topk.hip
    "all-candidates n<=k": (2, 300, 512, 4096, 512, 0, 1),
    "lds n<=cap": (2, 3000, 2048, 4096, 512, 0, 1),
    "sampled threshold": (2, 20000, 2048, 4096, 512, 0, 1),
    "exact path cap=16 ties": (1, 20000, 2048, 16, 1024, 2000, 1),
    # split threshold pass: several workgroups per row gather the candidates, the row's
    # workgroup selects; with cap=16 every slice overflows -> detected -> exact path
    "split threshold 5 chunks": (2, 20000, 2048, 4096, 512, 0, 5),
    "split threshold 2 chunks block 1024": (2, 30000, 2048, 4096, 1024, 0, 2),
    "split overflow cap=16 -> exact": (1, 9000, 1000, 16, 512, 1500, 3),
}


@pytest.mark.parametrize("case", sorted(TOPK_CASES))
def test_topk_runs_exactly(emu, case, tmp_path):
    """hip/topk.hip (radix select, bucket-rank output in column order) gives exactly the
    reference's set, in ascending column order, -1 after it."""
    wave, exe = emu
    rows, cols, k, cap, block, zeros, splits = TOPK_CASES[case]
    x = torch.randn(rows, cols)
    x[0, :zeros] = 0.0
    st = torch.zeros(rows, dtype=torch.int32)
    en = torch.full((rows,), cols, dtype=torch.int32)
    if rows > 1:
        st[1], en[1] = 7, cols - 3
    want = ops.topk_indices(x, st, en, k=k, provider="reference")
    (tmp_path / "meta.txt").write_text(f"{rows} {cols} {k} {cap} {block} {splits}")
    x.numpy().tofile(tmp_path / "x.bin")
    st.numpy().tofile(tmp_path / "starts.bin")
    en.numpy().tofile(tmp_path / "ends.bin")
    _run(exe, "topk", tmp_path)
    got = torch.from_numpy(np.fromfile(tmp_path / "out.bin", dtype=np.int32)).view(rows, k)
    big = torch.iinfo(torch.int32).max
    by_column = torch.where(want >= 0, want, torch.full_like(want, big)).sort(1).values
    assert torch.equal(got, torch.where(by_column == big, torch.full_like(by_column, -1), by_column))
