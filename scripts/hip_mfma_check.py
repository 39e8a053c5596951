#!/usr/bin/env python3
"""Full-size numerics and timing of the HIP MFMA kernels' PORTABLE path on a GPU (run on the H200).

hip/indexer_mfma.hip (paged FP8 indexer logits) and hip/sparse_mla_decode.hip (sparse MLA decode,
split-K + LSE merge) run MFMA code on gfx942 / gfx950 and, from the same source, a portable path
(FP32 FMAs in the MFMA C-fragment layout) everywhere else. On an NVIDIA GPU this script executes
that portable path, i.e. every shared part of the kernels (grid decode, page-table lookups and
bounds, causal MTP masks, -inf fills, -1 / out-of-range slot masking, FP8 record dequantization,
partial-S^T reduction, online softmax, split-K, LSE merge, 64-bit offsets), at DeepSeek-V3.2
shapes against the reference provider. The MFMA instructions themselves are compiled for
gfx942 / gfx950 (rocm-dsa compile) and NOT executed here.

1. builds the extension (nvcc on CUDA torch) and, in parallel, the TEST-ONLY wave64-emulation
   build (two warps per emulated wave: the kernels then use the wave64 C layout of the MFMA
   paths and wave64 reductions);
2. paged indexer: H = 64 (and 32 / 16), 128K contexts, next_n 1 / 2 / 3, e4m3fn and e4m3fnuz
   keys, random page tables with garbage ids past each context, contexts shorter than next_n,
   forced pages-per-workgroup values; -inf pattern exact, finite logits vs the reference;
3. sparse MLA decode: H = 16 / 32 / 64 / 128, top-k 2048, s_q 1 and 2, bf16 and 656-byte FP8
   caches (e4m3fn and e4m3fnuz), -1 anywhere, slots >= num_slots, all-invalid rows, duplicates,
   forced splits 1 / 7 / 128, a bf16 cache over 2 GiB read near its end;
4. the wave64-emulation build on a subset;
5. timing (CUDA events, warm-up, median of 10): the hip provider (portable path) and the Triton
   provider at the decode / paged-indexer sweep shapes. H200 figures, not MI300X ones.

Usage (repository root, rocm-dsa installed editable so that rocm_dsa.triton_kernels resolves for
the Triton comparison): python3 scripts/hip_mfma_check.py --out /tmp/hip_mfma
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

os.environ.setdefault("ROCM_DSA_HIP_PORTABLE", "1")  # the portable path is opt-in off gfx942 / gfx950

import torch  # noqa: E402

SM_SCALE = 0.1352338
INF = float("inf")
RESULTS: dict = {"checks": [], "timing": [], "env": {}}


def log(*a):
    print(*a, flush=True)


def record(name: str, ok: bool, detail: str = "", **extra):
    RESULTS["checks"].append({"name": name, "ok": bool(ok), "detail": detail, **extra})
    log(f"  [{'PASS' if ok else 'FAIL'}] {name} {detail}")


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def indexer_inputs(dev, b, next_n, h, lens, fp8, page=64, seed=0):
    from rocm_dsa.cache import indexer_cache_views
    from rocm_dsa.fp8 import cast_to_fp8

    g = torch.Generator(device=dev).manual_seed(seed)
    maxp = max(1, max(-(-n // page) for n in lens))
    npages = b * maxp + 7
    buf = torch.empty(npages, page * 132, dtype=torch.uint8, device=dev)
    values, scales = indexer_cache_views(buf)
    for s in range(0, npages, 2048):
        e = min(npages, s + 2048)
        values[s:e] = cast_to_fp8(torch.randn(e - s, page, 128, device=dev, generator=g), fp8).view(torch.uint8)
    scales.copy_(torch.rand(npages, page, device=dev, generator=g) * 0.02 + 0.001)
    q = cast_to_fp8(torch.randn(b, next_n, h, 128, device=dev, generator=g) * 2, fp8)
    w = torch.randn(b * next_n, h, device=dev, generator=g) * (h ** -0.5) * (128 ** -0.5)
    bt = torch.randperm(npages, device=dev, generator=g)[: b * maxp].view(b, maxp).to(torch.int32)
    for i, n in enumerate(lens):  # pages past the context: garbage ids, never read
        bt[i, -(-n // page):] = 1 << 30
    lens_t = torch.tensor(lens, dtype=torch.int32, device=dev)
    return q, buf, w, lens_t, bt


def mla_inputs(dev, b, s_q, h, topk, kv, fp8, n_slots, seed=0):
    from rocm_dsa.cache import pack_mla_fp8

    g = torch.Generator(device=dev).manual_seed(seed)
    if kv == "bf16":
        buf = torch.empty(n_slots, 1, 576, dtype=torch.bfloat16, device=dev)
        for s in range(0, n_slots, 1 << 18):
            e = min(n_slots, s + (1 << 18))
            buf[s:e, 0] = torch.randn(e - s, 576, device=dev, generator=g).bfloat16()
    else:
        buf = torch.empty(n_slots, 1, 656, dtype=torch.uint8, device=dev)
        for s in range(0, n_slots, 1 << 18):
            e = min(n_slots, s + (1 << 18))
            buf[s:e, 0] = pack_mla_fp8(torch.randn(e - s, 512, device=dev, generator=g) * 2,
                                       torch.randn(e - s, 64, device=dev, generator=g), fp8)
    q = torch.randn(b, s_q, h, 576, device=dev, generator=g).bfloat16()
    idx = torch.randint(0, n_slots, (b, s_q, topk), device=dev, generator=g, dtype=torch.int32)
    return q, buf, idx


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def bf16_close(got, want):
    """rocm_dsa.testing's bf16 rule, elementwise: |got - want| <= atol + rtol |want| (1.6e-2 each:
    about 2 bf16 ulps; peaked softmaxes give outputs of magnitude ~8, where one ulp is 0.031)."""
    from rocm_dsa.testing import TOLERANCES

    atol, rtol, _ = TOLERANCES[torch.bfloat16]
    g, w = got.double(), want.double()
    fin = torch.isfinite(w)
    return bool(((g[fin] - w[fin]).abs() <= atol + rtol * w[fin].abs()).all())


def cmp_indexer(name, got, want):
    from rocm_dsa.testing import compare

    inf_ok = torch.equal(torch.isneginf(got), torch.isneginf(want)) and not bool(torch.isnan(got).any())
    fin = torch.isfinite(want)
    scale = float(want[fin].abs().max()) if fin.any() else 1.0
    err = float((got[fin] - want[fin]).abs().max()) if fin.any() else 0.0
    d = compare(got, want)
    ok = inf_ok and err <= 2e-5 * scale + 1e-6 and d.cosine >= 1 - 1e-9
    record(name, ok, f"-inf pattern {'ok' if inf_ok else 'DIFFERS'}; max abs err {err:.3g} (|logit| max {scale:.3g}),"
                     f" cos {d.cosine:.10f}", max_abs=err, scale=scale)


def run_indexer_checks(ext, dev, tag, full=True):
    from rocm_dsa import ops
    from rocm_dsa.testing import poison

    cases = [  # name, B, next_n, H, context lens, fp8, pages_per_wg (None = heuristic)
        ("H64 decode 128K/70001/1/4097", 4, 1, 64, [131072, 70001, 1, 4097], torch.float8_e4m3fn, None),
        ("H64 MTP next_n=2 128K", 2, 2, 64, [131072, 65537], torch.float8_e4m3fn, None),
        ("H64 MTP next_n=3 short", 3, 3, 64, [2, 3000, 64], torch.float8_e4m3fnuz, 3),
        ("H64 e4m3fnuz 32K ppw=1", 2, 1, 64, [32768, 32000], torch.float8_e4m3fnuz, 1),
        ("H32 / GLM-style 16K", 2, 2, 32, [16384, 100], torch.float8_e4m3fn, 7),
        ("H16 8K", 2, 1, 16, [8192, 8191], torch.float8_e4m3fn, None),
    ]
    if not full:
        cases = [c for c in cases if "128K" not in c[0]]
    for name, b, nn, h, lens, fp8, ppw in cases:
        try:
            q, buf, w, lens_t, bt = indexer_inputs(dev, b, nn, h, lens, fp8)
            out = poison(torch.empty(b * nn, bt.shape[1] * 64, dtype=torch.float32, device=dev))
            if ppw is None:
                from rocm_dsa.backends.hip import indexer_pages_per_wg, launch_config
                from rocm_dsa.platform import detect

                plat = detect(dev)
                ppw_used = indexer_pages_per_wg(b * nn, bt.shape[1], plat.num_cus,
                                                launch_config("indexer_logits_paged", plat.arch))
            else:
                ppw_used = ppw
            got = ext.indexer_logits_paged(q, buf, w, lens_t, bt, ppw_used, out)
            want = ops.indexer_logits_paged(q, buf, w, lens_t, bt, provider="reference")
            cmp_indexer(f"{tag} indexer {name} (pages/WG {ppw_used})", got, want)
        except Exception:  # noqa: BLE001
            record(f"{tag} indexer {name} crashed", False, traceback.format_exc()[-1500:])
        torch.cuda.empty_cache()
    if full:  # the op through the provider registry (automatic choice included)
        try:
            from rocm_dsa.backends import record_selections

            q, buf, w, lens_t, bt = indexer_inputs(dev, 2, 1, 64, [5000, 300], torch.float8_e4m3fn)
            with record_selections() as sel:
                got = ops.indexer_logits_paged(q, buf, w, lens_t, bt, provider="hip")
            want = ops.indexer_logits_paged(q, buf, w, lens_t, bt, provider="reference")
            cmp_indexer(f"{tag} ops.indexer_logits_paged(provider='hip') -> {sel.get('indexer_logits_paged')}", got, want)
        except Exception:  # noqa: BLE001
            record(f"{tag} ops.indexer_logits_paged crashed", False, traceback.format_exc()[-1500:])


def run_decode_checks(ext, dev, tag, full=True):
    from rocm_dsa import ops
    from rocm_dsa.backends.hip import decode_num_splits, launch_config
    from rocm_dsa.platform import detect
    from rocm_dsa.testing import compare

    plat = detect(dev)
    cases = [  # name, B, s_q, H, topk, kv, fp8, n_slots, splits (None = heuristic)
        ("H128 bf16", 4, 1, 128, 2048, "bf16", torch.float8_e4m3fn, 1 << 18, None),
        ("H64 bf16 MTP s_q=2", 2, 2, 64, 2048, "bf16", torch.float8_e4m3fn, 1 << 18, None),
        ("H32 fp8 e4m3fn", 4, 1, 32, 2048, "fp8", torch.float8_e4m3fn, 1 << 18, None),
        ("H16 fp8 e4m3fnuz", 4, 1, 16, 2048, "fp8", torch.float8_e4m3fnuz, 1 << 18, None),
        ("H128 fp8 e4m3fnuz splits=1", 4, 1, 128, 2048, "fp8", torch.float8_e4m3fnuz, 1 << 18, 1),
        ("H16 bf16 splits=7", 4, 1, 16, 2048, "bf16", torch.float8_e4m3fn, 1 << 18, 7),
        ("H64 bf16 splits=128 (1 tile each)", 4, 1, 64, 2048, "bf16", torch.float8_e4m3fn, 1 << 18, 128),
        ("H128 bf16 topk=1000 (partial tile)", 3, 1, 128, 1000, "bf16", torch.float8_e4m3fn, 50000, None),
    ]
    if full:
        cases.append(("H64 bf16 cache > 2 GiB (slots near the end)", 4, 1, 64, 2048, "bf16", torch.float8_e4m3fn,
                      1_900_000, None))
    else:
        cases = cases[2:6]
    for name, b, s_q, h, topk, kv, fp8, n_slots, splits in cases:
        try:
            q, buf, idx = mla_inputs(dev, b, s_q, h, topk, kv, fp8, n_slots)
            if n_slots > 1_000_000:
                idx = torch.randint(n_slots - 300_000, n_slots, idx.shape, device=dev, dtype=torch.int32)
            r = idx.view(b * s_q, topk)
            r[0, : topk // 2] = -1                           # invalid first half
            r[min(1, r.shape[0] - 1), ::5] = -1              # scattered -1
            r[min(1, r.shape[0] - 1), 3::7] = n_slots + 17   # out of range
            if r.shape[0] > 2:
                r[2] = -1                                    # no valid slot: out 0, lse +inf
            if r.shape[0] > 3:
                r[3, 100:200] = r[3, 0]                      # duplicates count once per occurrence
            s = splits or decode_num_splits(b * s_q, h, topk, plat.num_cus, launch_config("sparse_mla_decode", plat.arch))
            out, lse = ext.sparse_mla_decode(q, buf, idx, SM_SCALE, fp8 == torch.float8_e4m3fnuz, s)
            want_out, want_lse = ops.sparse_mla_decode(q, buf, idx, sm_scale=SM_SCALE, fp8_dtype=fp8,
                                                       provider="reference")
            d_o, d_l = compare(out, want_out), compare(lse, want_lse)
            ok = (d_o.nonfinite_mismatch == 0 and bf16_close(out, want_out) and d_o.cosine >= 0.9999
                  and d_l.nonfinite_mismatch == 0 and d_l.max_abs <= 1e-3 and not bool(torch.isnan(out.float()).any()))
            record(f"{tag} decode {name} (splits {s})", ok,
                   f"out max abs {d_o.max_abs:.3g} cos {d_o.cosine:.7f}; lse max abs {d_l.max_abs:.3g}; "
                   f"non-finite mismatches {d_o.nonfinite_mismatch}/{d_l.nonfinite_mismatch}",
                   out_max_abs=d_o.max_abs, lse_max_abs=d_l.max_abs)
            del q, buf, idx, out, lse, want_out, want_lse
        except Exception:  # noqa: BLE001
            record(f"{tag} decode {name} crashed", False, traceback.format_exc()[-1500:])
        torch.cuda.empty_cache()
    if full:
        try:
            from rocm_dsa.backends import record_selections
            from rocm_dsa.cache import MLAKVCache

            cache = MLAKVCache(64, kv_dtype="fp8", fp8_dtype=torch.float8_e4m3fn, device=dev)
            n = cache.num_pages * cache.page_size
            cache.store(torch.randn(n, 512, device=dev), torch.randn(n, 64, device=dev),
                        torch.arange(n, device=dev), provider="reference")
            q = torch.randn(3, 1, 64, 576, device=dev).bfloat16()
            idx = torch.randint(-1, n, (3, 1, 2048), device=dev, dtype=torch.int32)
            with record_selections() as sel:
                out, lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="hip")
            want_out, want_lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider="reference")
            d_o, d_l = compare(out, want_out), compare(lse, want_lse)
            record(f"{tag} ops.sparse_mla_decode(provider='hip', MLAKVCache fp8) -> {sel.get('sparse_mla_decode')}",
                   bf16_close(out, want_out) and d_l.max_abs <= 1e-3 and d_o.nonfinite_mismatch == 0,
                   f"out max abs {d_o.max_abs:.3g}; lse max abs {d_l.max_abs:.3g}")
        except Exception:  # noqa: BLE001
            record(f"{tag} ops.sparse_mla_decode crashed", False, traceback.format_exc()[-1500:])


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def bench(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)
    return statistics.median(ts)


def run_timing(dev, budget_s):
    from rocm_dsa import ops
    from rocm_dsa.mi300x_model import indexer_logits_paged_estimate, sparse_mla_decode_estimate

    t_end = time.time() + budget_s
    log("  (median µs per call, CUDA events, eager; H200; hip = portable path, not the MFMA code)")
    for b, h in [(1, 16), (64, 16), (128, 16), (1, 128), (64, 128), (128, 128)]:
        if time.time() > t_end:
            log("  timing budget spent")
            break
        try:
            ctx = 32768
            n_slots = b * ctx
            q, buf, idx = mla_inputs(dev, b, 1, h, 2048, "bf16", torch.float8_e4m3fn, n_slots)
            row = {"op": "sparse_mla_decode", "B": b, "H": h, "ctx": ctx, "k": 2048, "kv": "bf16"}
            row["hip_us"] = bench(lambda: ops.sparse_mla_decode(q, buf, idx, sm_scale=SM_SCALE, provider="hip"))
            try:
                row["triton_us"] = bench(lambda: ops.sparse_mla_decode(q, buf, idx, sm_scale=SM_SCALE, provider="triton"))
            except Exception as ex:  # noqa: BLE001
                row["triton_us"] = None
                row["triton_error"] = f"{type(ex).__name__}: {str(ex)[:200]}"
            est = sparse_mla_decode_estimate(B=b, H=h, ctx=ctx, arch="gfx942")
            row["bytes"] = est.bytes
            row["h200_gbps_hip"] = est.bytes / (row["hip_us"] * 1e-6) / 1e9
            row["mi300x_predicted_us"] = est.predicted_us
            RESULTS["timing"].append(row)
            log(f"  decode B={b:3d} H={h:3d} ctx=32K k=2048 bf16: hip {row['hip_us']:8.1f} µs "
                f"({row['h200_gbps_hip']:.0f} GB/s of kernel traffic) | triton "
                f"{row['triton_us'] if row['triton_us'] is None else round(row['triton_us'], 1)} µs "
                f"| MI300X MFMA prediction {est.predicted_us:.1f} µs")
            del q, buf, idx
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            record(f"timing decode B={b} H={h} crashed", False, traceback.format_exc()[-1000:])
    for b, ctx in [(1, 32768), (64, 32768), (1, 131072), (64, 131072), (128, 131072)]:
        if time.time() > t_end:
            log("  timing budget spent")
            break
        try:
            q, buf, w, lens_t, bt = indexer_inputs(dev, b, 1, 64, [ctx] * b, torch.float8_e4m3fn)
            row = {"op": "indexer_logits_paged", "B": b, "next_n": 1, "H": 64, "ctx": ctx}
            row["hip_us"] = bench(lambda: ops.indexer_logits_paged(q, buf, w, lens_t, bt, provider="hip"))
            try:
                row["triton_us"] = bench(lambda: ops.indexer_logits_paged(q, buf, w, lens_t, bt, provider="triton"))
            except Exception as ex:  # noqa: BLE001
                row["triton_us"] = None
                row["triton_error"] = f"{type(ex).__name__}: {str(ex)[:200]}"
            est = indexer_logits_paged_estimate(B=b, ctx=ctx, arch="gfx942")
            row["bytes"] = est.bytes
            row["h200_gbps_hip"] = est.bytes / (row["hip_us"] * 1e-6) / 1e9
            row["mi300x_predicted_us"] = est.predicted_us
            RESULTS["timing"].append(row)
            log(f"  indexer paged B={b:3d} ctx={ctx // 1024}K H=64: hip {row['hip_us']:8.1f} µs "
                f"({row['h200_gbps_hip']:.0f} GB/s) | triton "
                f"{row['triton_us'] if row['triton_us'] is None else round(row['triton_us'], 1)} µs "
                f"| MI300X MFMA prediction {est.predicted_us:.1f} µs")
            del q, buf, w, lens_t, bt
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            record(f"timing indexer B={b} ctx={ctx} crashed", False, traceback.format_exc()[-1000:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="directory for hip_mfma_check.json")
    ap.add_argument("--skip-wave64", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--timing-budget-s", type=float, default=90.0)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        log("no GPU: torch.cuda.is_available() is False")
        return 2
    dev = torch.device("cuda")
    from rocm_dsa import hipext

    RESULTS["env"] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
                      "hip": torch.version.hip, "toolchain": str(hipext.toolchain()),
                      "path": "portable (no MFMA): the MFMA code is compiled for gfx942/gfx950, not executed here"}
    log(f"== {RESULTS['env']}")
    emu = None
    if not args.skip_wave64:
        emu = subprocess.Popen([sys.executable, "-c", "from rocm_dsa import hipext; hipext.load(variant='wave64-emulated')"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    ext = hipext.load(verbose=False)
    RESULTS["env"]["build_s"] = time.time() - t0
    log(f"== built in {RESULTS['env']['build_s']:.1f} s")
    log("== paged indexer (native build, wave32)")
    run_indexer_checks(ext, dev, "wave32")
    log("== sparse MLA decode (native build, wave32)")
    run_decode_checks(ext, dev, "wave32")
    if emu is not None:
        out, _ = emu.communicate()
        if emu.returncode != 0:
            record("wave64-emulated build", False, out[-3000:])
        else:
            log("== wave64 emulation build (2 warps per wave: the MFMA paths' C layout)")
            try:
                ext64 = hipext.load(variant="wave64-emulated")
                run_indexer_checks(ext64, dev, "wave64-emu", full=False)
                run_decode_checks(ext64, dev, "wave64-emu", full=False)
            except Exception:  # noqa: BLE001
                record("wave64-emulated checks crashed", False, traceback.format_exc()[-2000:])
    if not args.skip_timing:
        log("== timing")
        try:
            run_timing(dev, args.timing_budget_s)
        except Exception:  # noqa: BLE001
            record("timing crashed", False, traceback.format_exc()[-2000:])
    n_fail = sum(1 for c in RESULTS["checks"] if not c["ok"])
    log(f"== {len(RESULTS['checks']) - n_fail} passed, {n_fail} failed")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "hip_mfma_check.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
