#!/usr/bin/env python3
"""Exactness and speed of the Triton top-k (``triton_kernels/topk.py``) on a GPU, against
torch.topk measured in the same run (issue #3: >= 3x torch.topk at [64, 131072], k = 2048).

1. Exactness at full size against a float64 stable sort (ties to the lower column; NaN, -inf
   and columns outside the window never chosen; -0 == +0): random, heavily tied, tied maxima
   across the threshold, all-equal rows, NaN/-inf/+inf/-0 with ragged windows, then the same
   bytes on a second run (determinism) and across every launch variant timed.
2. Speed per variant (``--variants``: JSON config overrides; the config files when empty):
   CUDA-graph replay and eager, median of several timed loops, inputs rotated over 4 tensors
   (128 MiB > L2) so no call finds its logits in L2; torch.topk the same way. Per-kernel device
   times from the torch profiler.

Usage: python scripts/bench_topk_triton.py [--out DIR] [--budget S] [--prev OLD_topk.py]
       [--prev-meta JSON] [--variants 'NAME=JSON;NAME=JSON' | @scripts/topk_variants_h200.json]
       [--shapes 64x131072,...] [--exact-kinds random,tied,...]
       python scripts/bench_topk_triton.py --smoke   (CPU interpreter, small sizes: checks the script)
Writes DIR/bench_topk_triton.json and prints a table. Every figure is a measurement on the
machine it ran on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time
import traceback

import torch

from rocm_dsa.testing import topk_set_diff

T0 = time.time()
RES: dict = {"exact": {}, "speed": {}, "profile": {}, "errors": {}}
OUT = "."


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def save():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "bench_topk_triton.json"), "w") as f:
        json.dump(RES, f, indent=1, default=str)


def watchdog(seconds):
    """Save what is there and leave if the run hangs (a stuck kernel blocks the main thread)."""
    def fire():
        RES["errors"]["watchdog"] = f"no progress for {seconds} s; exiting"
        log("WATCHDOG: exiting")
        save()
        os._exit(3)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def reference(x, starts, ends, k):
    """[R, k] int64 ``column - starts`` of the exact top-k by a float64 stable sort, -1 padded."""
    r, c = x.shape
    cols = torch.arange(c, device=x.device)[None, :]
    lo = starts.long().clamp(0, c)[:, None]
    hi = torch.maximum(ends.long().clamp(0, c)[:, None], lo)
    xd = x.double()
    cand = (cols >= lo) & (cols < hi) & ~torch.isnan(xd) & (xd != float("-inf"))
    v = torch.where(cand, xd, torch.full_like(xd, float("-inf")))
    idx = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
    n = cand.sum(1, keepdim=True).clamp(max=k)
    keep = torch.arange(idx.shape[1], device=x.device)[None, :] < n
    out = torch.full((r, k), -1, dtype=torch.int64, device=x.device)
    out[:, :idx.shape[1]] = torch.where(keep, idx - starts.long()[:, None], -1)
    return out


def compare(got, want):
    d = topk_set_diff(got, want)
    poison = int((got == -7).sum())
    return {"rows_differ": d["rows_differ"], "prefix_ok": d["prefix_ok"], "poison_left": poison,
            "exact": d["rows_differ"] == 0 and d["prefix_ok"] and poison == 0}


def inputs(kind, r, c, dev, gen):
    x = torch.randn(r, c, device=dev, generator=gen)
    st = torch.zeros(r, dtype=torch.int32, device=dev)
    en = torch.full((r,), c, dtype=torch.int32, device=dev)
    if kind == "tied":  # 100 distinct values: thousands tied at the threshold
        x = torch.randint(-50, 50, (r, c), device=dev, generator=gen).float()
    elif kind == "tied16":  # 16 distinct values: the buffer overflows, exact slow path
        x = torch.randint(-8, 8, (r, c), device=dev, generator=gen).float()
    elif kind == "tied_top":  # 3000 equal maxima: ties at the k-th through the buffer
        x[:, c // 3: c // 3 + 3000] = 7.0
    elif kind == "equal":
        x = torch.full((r, c), 0.25, device=dev)
    elif kind == "special":  # NaN, -inf, +inf, -0/+0, ragged windows, a row with < k candidates
        x = x.round()
        x[x == 0] = -0.0
        x[:, ::5] = float("nan")
        x[:, 1::7] = float("-inf")
        x[:, 3::4001] = float("inf")
        x[::2, 2::3] = 0.0
        st = torch.randint(0, c // 4, (r,), device=dev, generator=gen, dtype=torch.int32)
        en = torch.randint(c // 2, c + 1, (r,), device=dev, generator=gen, dtype=torch.int32)
        en[0] = st[0] + 100
        st[-1] = -5
    elif kind == "causal":  # the last r tokens of a c-token prefill: windows [0, c - r + 1 + i)
        en = torch.arange(c - r + 1, c + 1, device=dev, dtype=torch.int32)
    return x, st, en


def timed(fn, args_list, graph, loops=7, calls=20):
    """Median us per call of ``fn(*args)`` over args rotated from ``args_list``."""
    n = len(args_list)
    if not torch.cuda.is_available():  # --smoke on a CPU: one pass, wall clock
        t = time.perf_counter()
        for v in args_list:
            fn(*v)
        return (time.perf_counter() - t) * 1e6 / n
    if graph:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for a in args_list:
                fn(*a)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for a in args_list:
                fn(*a)
        run, per = g.replay, n
        reps = max(1, calls // n)
    else:
        def run():
            for a in args_list:
                fn(*a)
        per, reps = n, max(1, calls // n)
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    ts = []
    for _ in range(loops):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(reps):
            run()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e3 / (reps * per))
    ts.sort()
    return ts[len(ts) // 2]


def profile(fn, args):
    from torch.profiler import ProfilerActivity, profile as prof_ctx

    if not torch.cuda.is_available():
        return {}
    fn(*args)
    torch.cuda.synchronize()
    with prof_ctx(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            fn(*args)
        torch.cuda.synchronize()
    per = {}
    for ev in prof.key_averages():
        dt = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
        if dt:
            per[ev.key[:60]] = round(dt / 20, 2)
    return per


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--budget", type=float, default=200.0, help="seconds after which variants are skipped")
    ap.add_argument("--prev", default=None, help="an earlier topk.py, timed the same way")
    ap.add_argument("--prev-meta", default="{}", help="config overrides for --prev (its own config values)")
    ap.add_argument("--variants", default="", help="';'-separated NAME=JSON config overrides, or @FILE of a JSON "
                    "object NAME -> overrides")
    ap.add_argument("--shapes", default="64x131072,128x65536,1x131072,4096x65536")
    ap.add_argument("--exact-kinds", default="random,tied,tied16,tied_top,equal,special,causal")
    ap.add_argument("--smoke", action="store_true", help="CPU interpreter, small sizes: checks the script")
    a = ap.parse_args()
    OUT = a.out
    if a.smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    import triton

    from rocm_dsa.platform import detect
    from rocm_dsa.triton_kernels import topk as tk

    dev = torch.device("cpu" if a.smoke else "cuda")
    arch = detect(dev).arch
    RES["machine"] = {"gpu": "cpu (smoke)" if a.smoke else torch.cuda.get_device_name(), "arch": arch,
                      "torch": torch.__version__,
                      "triton": triton.__version__, "hist_mask": tk._HIST_MASK, "argv": sys.argv}
    log(RES["machine"])
    variants = [("config", {})]
    if a.variants.startswith("@"):
        with open(a.variants[1:]) as f:
            a.variants = ";".join(f"{name}={json.dumps(meta)}" for name, meta in json.load(f).items())
    for item in filter(None, a.variants.split(";")):
        name, js = item.split("=", 1)
        variants.append((name.strip(), json.loads(js)))
    mods = {name: (tk, meta) for name, meta in variants[:1]}
    if a.prev:
        spec = importlib.util.spec_from_file_location("rocm_dsa.triton_kernels._topk_prev", a.prev)
        prev = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(prev)
        mods["prev"] = (prev, json.loads(a.prev_meta))
    mods.update({name: (tk, meta) for name, meta in variants[1:]})
    RES["variants"] = {name: meta for name, (_, meta) in mods.items()}
    gen = torch.Generator(device=dev).manual_seed(0)
    k = 64 if a.smoke else 2048
    big_r, big_c = (4, 3000) if a.smoke else (64, 131072)
    dog = watchdog(600 if a.smoke else 120)

    def call(mod, meta, x, st, en, o):
        mod.launch_topk(x, st, en, k, o, arch=arch, meta=meta)

    # 1. every variant at [64, 131072] (the first shape): exactness on every kind against the
    #    float64 sort, the same bytes as the config and on a second run, then speed
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    kinds = a.exact_kinds.split(",")
    r, c = shapes[0]
    checks = {kind: inputs(kind, r, c, dev, gen) for kind in kinds}
    wants = {kind: reference(*v, k) for kind, v in checks.items()}
    base_out = {}
    rot = [inputs("random", r, c, dev, gen) for _ in range(4)]
    outs = [torch.empty(r, k, dtype=torch.int32, device=dev) for _ in range(4)]
    tt = [(x,) for x, _, _ in rot]
    tkey = f"torch.topk {r}x{c}"
    RES["speed"][tkey] = {"graph_us": timed(lambda x: torch.topk(x, k, dim=1), tt, True),
                          "eager_us": timed(lambda x: torch.topk(x, k, dim=1), tt, False)}
    log("torch.topk", RES["speed"][tkey])
    torch_graph, torch_eager = RES["speed"][tkey]["graph_us"], RES["speed"][tkey]["eager_us"]
    for name, (mod, meta) in mods.items():
        if time.time() - T0 > a.budget:
            RES["errors"][name] = "skipped: budget"
            continue
        try:
            ex = {}
            for kind, (x, st, en) in checks.items():
                o = torch.full((r, k), -7, dtype=torch.int32, device=dev)
                call(mod, meta, x, st, en, o)
                d = compare(o, wants[kind])
                if name == "config":
                    o2 = torch.full((r, k), -7, dtype=torch.int32, device=dev)
                    call(mod, meta, x, st, en, o2)
                    d["same_bytes_twice"] = bool(torch.equal(o, o2))
                    base_out[kind] = o
                elif mod is tk and kind in base_out:
                    d["same_bytes_as_config"] = bool(torch.equal(o, base_out[kind]))
                ex[kind] = d
            args = [(x, st, en, outs[i]) for i, (x, st, en) in enumerate(rot)]
            g = timed(lambda *v: call(mod, meta, *v), args, True)
            e = timed(lambda *v: call(mod, meta, *v), args, False)
            row = {"graph_us": round(g, 2), "eager_us": round(e, 2), "x_graph": round(torch_graph / g, 3),
                   "x_eager": round(torch_eager / e, 3),
                   "exact": all(d["exact"] and d.get("same_bytes_twice", True) and d.get("same_bytes_as_config", True)
                                for d in ex.values()), "checks": ex}
            RES["speed"][f"{name} {r}x{c}"] = row
            RES["profile"][name] = profile(lambda *v: call(mod, meta, *v), args[0])
            log(name, {kk: v for kk, v in row.items() if kk != "checks"}, RES["profile"][name])
            if not row["exact"]:
                log("INEXACT", name, ex)
        except Exception as e:  # noqa: BLE001 - report and go on
            RES["errors"][name] = f"{type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
        dog.cancel()
        dog = watchdog(600 if a.smoke else 120)
        save()
    del checks, wants, base_out
    # 2. the config at the other shapes: exactness (kinds up to 16M elements), determinism, speed
    for r2, c2 in shapes[1:]:
        if time.time() - T0 > a.budget + 25:
            RES["errors"][f"{r2}x{c2}"] = "skipped: budget"
            continue
        try:
            for kind in kinds:
                if r2 * c2 > (1 << 24) and kind not in ("random", "tied"):
                    continue
                x, st, en = inputs(kind, r2, c2, dev, gen)
                want = reference(x, st, en, k)
                o = torch.full((r2, k), -7, dtype=torch.int32, device=dev)
                call(tk, {}, x, st, en, o)
                d = compare(o, want)
                o2 = torch.full((r2, k), -7, dtype=torch.int32, device=dev)
                call(tk, {}, x, st, en, o2)
                d["same_bytes_twice"] = bool(torch.equal(o, o2))
                RES["exact"][f"config {r2}x{c2} {kind}"] = d
                log("exact", r2, c2, kind, d)
                del x, want, o, o2
        except Exception as e:  # noqa: BLE001
            RES["errors"][f"exact {r2}x{c2}"] = f"{type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
        dog.cancel()
        dog = watchdog(600 if a.smoke else 120)
        save()
    # 3. the config at the other shapes: speed
    for r2, c2 in shapes[1:]:
        if time.time() - T0 > a.budget + 35:
            break
        try:
            rot2 = [inputs("random", r2, c2, dev, gen) for _ in range(2 if r2 * c2 > (1 << 24) else 4)]
            o = torch.empty(r2, k, dtype=torch.int32, device=dev)
            args = [(x, st, en, o) for x, st, en in rot2]
            row = {"graph_us": timed(lambda *v: call(tk, {}, *v), args, True),
                   "eager_us": timed(lambda *v: call(tk, {}, *v), args, False)}
            t2 = [(x,) for x, _, _ in rot2]
            row["torch_graph_us"] = timed(lambda x: torch.topk(x, k, dim=1), t2, True)
            row["torch_eager_us"] = timed(lambda x: torch.topk(x, k, dim=1), t2, False)
            row["x_graph"] = row["torch_graph_us"] / row["graph_us"]
            row["x_eager"] = row["torch_eager_us"] / row["eager_us"]
            RES["speed"][f"config {r2}x{c2}"] = row
            log("shape", r2, c2, row)
        except Exception as e:  # noqa: BLE001
            RES["errors"][f"speed {r2}x{c2}"] = f"{type(e).__name__}: {str(e)[:400]}"
            traceback.print_exc()
        dog.cancel()
        dog = watchdog(600 if a.smoke else 120)
        save()
    dog.cancel()
    save()
    print("\n=== Triton top-k, k = 2048 (measured on", RES["machine"]["gpu"], ") ===")
    bad = [key for key, d in RES["exact"].items() if not (d["exact"] and d["same_bytes_twice"])]
    bad += [key for key, d in RES["speed"].items() if "exact" in d and not d["exact"]]
    print("inexact or nondeterministic:", bad or "none")
    for key, row in RES["speed"].items():
        print(f"{key:40s}", " ".join(f"{kk}={v:.2f}" if isinstance(v, float) else f"{kk}={v}"
                                     for kk, v in row.items() if kk != "checks"))
    for name, per in RES["profile"].items():
        print("profile", name, per)
    print("errors:", RES["errors"] or "none")


if __name__ == "__main__":
    main()
