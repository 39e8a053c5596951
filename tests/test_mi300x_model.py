"""rocm_dsa.mi300x_model: bytes / MFMA counts per launch follow the kernels' tiling; predictions
are max(bytes / bandwidth, FLOPs / peak) on the datasheet figures."""

from __future__ import annotations

import pytest

from rocm_dsa import mi300x_model as M
from rocm_dsa.platform import ARCHS


def test_decode_counts_small_shape():
    e = M.sparse_mla_decode_estimate(B=1, H=16, k=32, arch="gfx942")
    assert e.config["num_splits"] == 1 and e.config["head_blocks"] == 1
    assert e.mfma == {"v_mfma_f32_16x16x16_bf16": 2 * (36 + 32)}  # 2 tiles x (QK + PV)
    assert e.bytes == 32 * 1152 + 16 * 576 * 2 + 16 * 512 * 2 + 16 * 4 + 32 * 4
    e950 = M.sparse_mla_decode_estimate(B=1, H=16, k=32, arch="gfx950")
    assert e950.mfma == {"v_mfma_f32_16x16x32_bf16": 2 * 18, "v_mfma_f32_16x16x16_bf16": 2 * 32}
    assert e950.mfma_flops == e.mfma_flops  # same math, different instructions


def test_decode_head_blocks_reread_rows_and_fp8_records_are_smaller():
    bf = M.sparse_mla_decode_estimate(B=4, H=128, k=2048, arch="gfx942")
    fp = M.sparse_mla_decode_estimate(B=4, H=128, k=2048, kv="fp8", arch="gfx942")
    assert bf.config["head_blocks"] == 2
    assert bf.bytes - fp.bytes == 4 * 2 * 2048 * (1152 - 656)
    short = M.sparse_mla_decode_estimate(B=4, H=128, k=2048, ctx=1000, arch="gfx942")
    assert short.bytes < bf.bytes and short.mfma == bf.mfma  # -1 slots are not read, tiles still run


def test_indexer_counts_and_causal_rows():
    e = M.indexer_logits_paged_estimate(B=1, ctx=64, H=64, arch="gfx942")
    assert e.mfma == {"v_mfma_f32_16x16x32_fp8_fp8": 4 * 4 * 4}  # 4 tiles x 4 M-tiles x 4 k-steps
    assert M.indexer_logits_paged_estimate(B=1, ctx=64, H=64, arch="gfx950").mfma == {
        "v_mfma_f32_16x16x128_f8f6f4": 4 * 4}
    mtp = M.indexer_logits_paged_estimate(B=1, ctx=64, next_n=2, H=64, arch="gfx942")
    assert mtp.mfma["v_mfma_f32_16x16x32_fp8_fp8"] == (4 + 4) * 16  # rows see 63 and 64 keys: 4 tiles each
    with pytest.raises(ValueError, match="H / page_size"):
        M.indexer_logits_paged_estimate(B=1, ctx=64, H=48)


def test_prediction_is_the_roofline_of_the_counts():
    e = M.indexer_logits_paged_estimate(B=128, ctx=131072, arch="gfx942")
    plat = ARCHS["gfx942"]
    assert e.hbm_us == pytest.approx(e.bytes / (plat.peak_hbm_gbps * 1e9) * 1e6)
    assert e.mfma_us == pytest.approx(e.mfma_flops / (plat.peak_fp8_tflops * 1e12) * 1e6)
    assert e.predicted_us == max(e.hbm_us, e.mfma_us) and e.bound == "memory"


def test_bench_points_and_cli(capsys):
    assert M.kernel_estimate("topk_indices", {"R": 1, "C": 1}) is None
    rows = M.sweep_estimates("gfx942")
    assert {r.op for r in rows} == {"sparse_mla_decode", "indexer_logits_paged"}
    assert M.main(["--arch", "gfx950"]) == 0
    out = capsys.readouterr().out
    assert "PREDICTED" in out and "MI355X" in out
    with pytest.raises(ValueError, match="arch"):
        M.sparse_mla_decode_estimate(B=1, H=16, arch="sm90")
