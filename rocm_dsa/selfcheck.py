"""Provider x op availability and quick self-tests against the reference (``rocm-dsa check``).

For each op of :data:`rocm_dsa.backends.OPS` a *probe* builds the :class:`~rocm_dsa.backends.Case`
that :mod:`rocm_dsa.ops` would build for a small call on the chosen device, asks every provider
``supports(case)`` (available, or the reasons it is not), and — for each available provider —
runs the public op at small DeepSeek-V3.2-like shapes (indexer H=64, D=128, k=2048; MLA 576/512,
page 64) on fresh random inputs and compares the result with the reference provider run on the
same inputs:

* logits, LSE and max-logits: fp32 tolerances; non-finite entries (-inf outside windows, +inf
  LSE of empty rows) must match exactly;
* top-k of given logits (:func:`rocm_dsa.ops.topk_indices`): the exact index set per row, with
  ties (integer-valued logits) decided toward the lower column;
* fused indexer + top-k: a valid -1-padded prefix of in-window indices and >= 99.8 % set overlap
  (the provider's logits may differ from the reference's in the last fp32 bit, which can swap
  near-equal candidates at the k-th place);
* sparse MLA outputs: the bfloat16 tolerance of :data:`rocm_dsa.testing.TOLERANCES`;
* cache stores: byte-exact buffers (from identical random initial bytes, so untouched slots are
  checked too).

The reference provider is the definition: its self-test only checks that it runs and that its
outputs have the contract's shapes. Triton on a CPU runs only under ``TRITON_INTERPRET=1``.

Nothing here runs at import time; :func:`run_check` does the work and returns plain data
(JSON-serializable through :meth:`CheckReport.to_dict`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform as _pyplatform
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from . import ops
from .backends import OPS, Case, ProviderError, get_provider, make_case, provider_names, select
from .cache import MLA_DIM, MLA_FP8_RECORD_BYTES
from .fp8 import quantize_fp8
from .platform import Platform, detect

__all__ = [
    "PROBES",
    "Probe",
    "ProbeResult",
    "CheckReport",
    "platform_info",
    "versions",
    "execution_path",
    "run_check",
]

#: DeepSeek-V3.2 widths the probes use (indexer heads / dim, top-k, MLA softmax scale)
INDEX_HEADS, INDEX_DIM, TOPK, PAGE = 64, 128, 2048, 64
SM_SCALE = 0.1352338
#: fused top-k results must share at least this fraction of each row's set with the reference
MIN_TOPK_OVERLAP = 0.998


# ---------------------------------------------------------------------------------------------
# machine description
# ---------------------------------------------------------------------------------------------
def _dist_version(*names: str) -> str | None:
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _rocm_release() -> str | None:
    for path in ("/opt/rocm/.info/version", "/opt/rocm/.info/version-dev"):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            continue
    return None


def versions() -> dict[str, str | None]:
    """Installed versions of the stack, read from package metadata (nothing heavy is imported).

    Keys: python, rocm_dsa, torch, torch_hip (HIP version torch was built with), torch_cuda,
    rocm (``/opt/rocm/.info/version``), triton (also found as ``pytorch-triton-rocm`` /
    ``triton-rocm`` / ``pytorch-triton``), sglang, aiter (distribution ``amd-aiter``),
    flash_mla, deep_gemm, msgpack, matplotlib. None = not installed.
    """
    from . import __version__

    return {
        "python": _pyplatform.python_version(),
        "rocm_dsa": __version__,
        "torch": torch.__version__,
        "torch_hip": torch.version.hip,
        "torch_cuda": torch.version.cuda,
        "rocm": _rocm_release(),
        "triton": _dist_version("triton", "pytorch-triton-rocm", "triton-rocm", "pytorch-triton"),
        "sglang": _dist_version("sglang"),
        "aiter": _dist_version("amd-aiter", "aiter"),
        "flash_mla": _dist_version("flash-mla", "flash_mla"),
        "deep_gemm": _dist_version("deep-gemm", "deep_gemm"),
        "msgpack": _dist_version("msgpack"),
        "matplotlib": _dist_version("matplotlib"),
    }


def platform_info(device: torch.device) -> dict[str, Any]:
    """The detected platform of ``device`` as plain data (arch, part name, CUs/SMs, wave size,
    LDS bytes, native FP8 dtype and its max, datasheet peaks, torch device name)."""
    p: Platform = detect(device)
    d = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _pyplatform.processor()
        or _pyplatform.machine(),
        "arch": p.arch,
        "vendor": p.vendor,
        "part": p.name,
        "compute_units": p.num_cus,
        "wave_size": p.wave_size,
        "lds_bytes": p.lds_bytes,
        "fp8_dtype": str(p.fp8_dtype).replace("torch.", ""),
        "fp8_max": p.fp8_max,
        "peak_hbm_gbps": p.peak_hbm_gbps,
        "peak_bf16_tflops": p.peak_bf16_tflops,
        "peak_fp8_tflops": p.peak_fp8_tflops,
        "runtime": (f"HIP {torch.version.hip}" if torch.version.hip else
                    f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"),
    }
    if device.type == "cpu":
        d["cpu_threads"] = torch.get_num_threads()
    return d


def execution_path(provider: str, device: torch.device) -> str:
    """How ``provider`` executes on ``device``, in words (shown by ``rocm-dsa check``).

    A provider may describe itself through an ``execution_path(device) -> str`` method; otherwise
    the known providers are described here (reference: PyTorch eager; triton: the Triton
    interpreter on a CPU, else Triton's JIT for the device's arch; hip: the torch extension built
    with hipcc or nvcc; aiter/flashmla/deepgemm: the vendor library).
    """
    p = get_provider(provider)
    own = getattr(p, "execution_path", None)
    if callable(own):
        try:
            return str(own(device))
        except Exception:  # noqa: BLE001 - a description must never break the check
            pass
    arch = detect(device).arch
    if provider == "reference":
        return f"PyTorch eager on {device}"
    if provider == "triton":
        if device.type == "cpu":
            return "Triton interpreter (TRITON_INTERPRET=1) on cpu"
        return f"Triton JIT -> {arch} on {device}"
    if provider == "hip":
        tool = "hipcc" if torch.version.hip else "nvcc"
        return f"HIP torch extension ({tool}, {arch}) on {device}"
    return f"{provider} library kernels ({arch}) on {device}"


# ---------------------------------------------------------------------------------------------
# probes: one small call per op (and KV format)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Probe:
    """One op variant checked by ``rocm-dsa check``.

    Attributes:
        label: row name (op, plus the KV format for sparse MLA / MLA stores).
        op: op name in :data:`rocm_dsa.backends.OPS`.
        kv_format: "bf16" / "fp8" for the MLA ops, "" otherwise.
    """

    label: str
    op: str
    kv_format: str = ""


PROBES: tuple[Probe, ...] = (
    Probe("indexer_logits", "indexer_logits"),
    Probe("indexer_logits_paged", "indexer_logits_paged"),
    Probe("topk_indices", "topk_indices"),
    Probe("indexer_topk", "indexer_topk"),
    Probe("indexer_topk_paged", "indexer_topk_paged"),
    Probe("sparse_mla_prefill[bf16]", "sparse_mla_prefill", "bf16"),
    Probe("sparse_mla_prefill[fp8]", "sparse_mla_prefill", "fp8"),
    Probe("sparse_mla_decode[bf16]", "sparse_mla_decode", "bf16"),
    Probe("sparse_mla_decode[fp8]", "sparse_mla_decode", "fp8"),
    Probe("store_indexer_k", "store_indexer_k"),
    Probe("store_mla_kv[bf16]", "store_mla_kv", "bf16"),
    Probe("store_mla_kv[fp8]", "store_mla_kv", "fp8"),
)
assert {p.op for p in PROBES} == set(OPS), "every op needs a probe"


def probe_case(probe: Probe, device: torch.device, heads: int) -> Case:
    """The :class:`Case` :mod:`rocm_dsa.ops` builds for the probe's call (same op-specific facts),
    so ``supports()`` answers exactly what a real call of that shape would get."""
    fp8 = detect(device).fp8_dtype
    op = probe.op
    if op in ("indexer_logits", "indexer_topk"):
        extra = {"head_dim": INDEX_DIM} if op == "indexer_logits" else {"k": TOPK, "head_dim": INDEX_DIM}
        return make_case(op, device, heads=INDEX_HEADS, dtypes={"q_fp8": fp8}, **extra)
    if op in ("indexer_logits_paged", "indexer_topk_paged"):
        extra: dict[str, Any] = {"next_n": 1, "page_size": PAGE}
        if op == "indexer_topk_paged":
            extra["k"] = TOPK
        return make_case(op, device, heads=INDEX_HEADS, dtypes={"q_fp8": fp8}, **extra)
    if op == "topk_indices":
        return make_case(op, device, k=TOPK, columns=_TOPK_COLS)
    if op == "sparse_mla_prefill":
        return make_case(op, device, heads=heads, dtypes={"q": torch.bfloat16}, kv_format=probe.kv_format,
                         topk=TOPK)
    if op == "sparse_mla_decode":
        return make_case(op, device, heads=heads, dtypes={"q": torch.bfloat16}, kv_format=probe.kv_format,
                         s_q=1, topk=TOPK)
    if op == "store_indexer_k":
        return make_case(op, device, dtypes={"k": torch.bfloat16, "fp8": fp8})
    if op == "store_mla_kv":
        return make_case(op, device, dtypes={"c_kv": torch.bfloat16}, kv_format=probe.kv_format)
    raise ValueError(f"probe: unknown op {op!r}")


# ---------------------------------------------------------------------------------------------
# inputs (small shapes, fresh random data, never all-zero)
# ---------------------------------------------------------------------------------------------
_TOPK_ROWS, _TOPK_COLS = 6, 3000


def _gen(device: torch.device, seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def _randn(g: torch.Generator, *shape: int, device: torch.device) -> torch.Tensor:
    return torch.randn(*shape, generator=g).to(device)


def _i32(x: Iterable[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.int32).to(device)


def _indexer_inputs(g, device, t: int, n: int):
    """Ragged indexer inputs: q_fp8 [t, 64, 128], k_fp8 [n, 128], k_scale [n], weights [t, 64],
    ks/ke [t] for two requests (causal windows)."""
    fp8 = detect(device).fp8_dtype
    q, q_scale = quantize_fp8(_randn(g, t, INDEX_HEADS, INDEX_DIM, device=device), fp8_dtype=fp8)
    k, k_scale = quantize_fp8(_randn(g, n, INDEX_DIM, device=device), fp8_dtype=fp8)
    w = _randn(g, t, INDEX_HEADS, device=device) * q_scale[..., 0] * (INDEX_HEADS ** -0.5) * (INDEX_DIM ** -0.5)
    # request A: keys [0, a), its queries are its last tokens; request B: keys [a, n)
    a = n // 2
    ta = t // 2
    ks = [0] * ta + [a] * (t - ta)
    ke = [a - ta + 1 + i for i in range(ta)] + [n - (t - ta) + 1 + i for i in range(t - ta)]
    return (q.contiguous(), k.contiguous(), k_scale[:, 0].contiguous(), w.float().contiguous(),
            _i32(ks, device), _i32(ke, device))


def _paged_indexer_inputs(g, device, lens: list[int], next_n: int = 1):
    """Paged indexer inputs over a shuffled page table: q_fp8 [B, next_n, 64, 128], cache buffer,
    weights [B*next_n, 64], context_lens [B], block_table [B, max_pages]."""
    fp8 = detect(device).fp8_dtype
    b = len(lens)
    max_pages = max(-(-n // PAGE) for n in lens)
    num_pages = b * max_pages + 3
    perm = torch.randperm(num_pages, generator=g)[: b * max_pages].reshape(b, max_pages)
    block_table = perm.to(torch.int32).to(device)
    buf = torch.randint(0, 256, (num_pages, PAGE * (INDEX_DIM + 4)), generator=g, dtype=torch.uint8).to(device)
    # valid keys in every slot the requests use (random bytes may decode to NaN FP8)
    slots = torch.cat([
        (perm[i].long()[torch.arange(n) // PAGE] * PAGE + torch.arange(n) % PAGE) for i, n in enumerate(lens)
    ]).to(device)
    keys = _randn(g, slots.numel(), INDEX_DIM, device=device)
    ops.store_indexer_k(keys, buf, slots, fp8_dtype=fp8, provider="reference")
    q, q_scale = quantize_fp8(_randn(g, b, next_n, INDEX_HEADS, INDEX_DIM, device=device), fp8_dtype=fp8)
    w = (_randn(g, b * next_n, INDEX_HEADS, device=device) * q_scale.reshape(b * next_n, INDEX_HEADS)
         * (INDEX_HEADS ** -0.5) * (INDEX_DIM ** -0.5)).float().contiguous()
    return q.contiguous(), buf, w, _i32(lens, device), block_table


def _mla_rows(g, device, n: int, kv_format: str) -> torch.Tensor:
    """[n, 1, 576] bf16 rows or [n, 1, 656] uint8 FP8 records (written by the reference store)."""
    c_kv = _randn(g, n, 512, device=device)
    k_rope = _randn(g, n, 64, device=device)
    if kv_format == "bf16":
        buf = torch.empty(n, 1, MLA_DIM, dtype=torch.bfloat16, device=device)
    else:
        buf = torch.empty(n, 1, MLA_FP8_RECORD_BYTES, dtype=torch.uint8, device=device)
    ops.store_mla_kv(c_kv, k_rope, buf, torch.arange(n, device=device), fp8_dtype=detect(device).fp8_dtype,
                     provider="reference")
    return buf


def _sparse_indices(g, rows: int, n: int, topk: int) -> torch.Tensor:
    """[rows, topk] int32 distinct valid rows of [0, n) with -1 runs, a -1 in the middle and
    out-of-range (>= n) entries sprinkled in; the last row is fully invalid."""
    idx = torch.stack([torch.randperm(n, generator=g)[:topk] for _ in range(rows)]).to(torch.int32)
    idx[0, :17] = -1
    idx[min(1, rows - 1), topk // 2] = -1
    idx[min(1, rows - 1), topk // 3] = n + 5
    idx[-1, :] = -1
    return idx


# Each builder returns (call, compare): call(provider) -> result, compare(actual, expected) -> None
# (raises AssertionError with figures). The inputs are shared between both calls.
Result = Any


def _close(name: str, actual: torch.Tensor, expected: torch.Tensor, *, dtype: torch.dtype,
           atol: float | None = None, rtol: float | None = None, min_cos: float | None = None) -> str:
    from .testing import assert_close

    d = assert_close(actual, expected, dtype=dtype, atol=atol, rtol=rtol, min_cos=min_cos, name=name)
    return f"{name}: max_abs={d.max_abs:.2g} cos={d.cosine:.7f}"


def _logits_close(name: str, actual: torch.Tensor, expected: torch.Tensor) -> str:
    finite = expected[torch.isfinite(expected)]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    return _close(name, actual, expected, dtype=torch.float32, atol=1e-4 * scale + 1e-6, rtol=1e-3,
                  min_cos=0.99999)


def _topk_exact(actual: torch.Tensor, expected: torch.Tensor) -> str:
    from .testing import assert_topk_equal

    assert_topk_equal(actual, expected)
    return f"exact sets, {int((expected >= 0).sum())} indices"


def _topk_overlap(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor | None = None) -> str:
    from .testing import topk_overlap

    if actual.shape != expected.shape or actual.dtype != torch.int32:
        raise AssertionError(f"indices: expected int32 {list(expected.shape)}, got {actual.dtype} {list(actual.shape)}")
    a = actual.cpu()
    for r, row in enumerate(a):
        valid = row >= 0
        m = int(valid.sum())
        if not bool(valid[:m].all()) or bool((row[m:] != -1).any()):
            raise AssertionError(f"indices: row {r} is not a valid prefix followed by -1")
        if len(set(row[:m].tolist())) != m:
            raise AssertionError(f"indices: row {r} repeats an index")
        if bound is not None and m and int(row[:m].max()) >= int(bound[r]):
            raise AssertionError(f"indices: row {r} holds {int(row[:m].max())} >= its window {int(bound[r])}")
        want = int((expected[r] >= 0).sum())
        if m != want:
            raise AssertionError(f"indices: row {r} has {m} valid entries, the reference {want}")
    ov = topk_overlap(actual, expected)
    if ov < MIN_TOPK_OVERLAP:
        raise AssertionError(f"indices: set overlap {ov:.5f} < {MIN_TOPK_OVERLAP}")
    return f"overlap {ov:.5f}"


def _build(probe: Probe, device: torch.device, heads: int, seed: int):
    g = _gen(device, seed)
    fp8 = detect(device).fp8_dtype
    op = probe.op
    if op == "indexer_logits":
        args = _indexer_inputs(g, device, 5, 300)
        return (lambda p: ops.indexer_logits(*args, provider=p)), (lambda a, e: _logits_close("logits", a, e))
    if op == "indexer_topk":
        args = _indexer_inputs(g, device, 4, 2 * TOPK + 600)
        window = (args[5] - args[4]).cpu()
        return ((lambda p: ops.indexer_topk(*args, k=TOPK, provider=p)),
                (lambda a, e: _topk_overlap(a, e, window)))
    if op == "indexer_logits_paged":
        args = _paged_indexer_inputs(g, device, [TOPK + 452, 700])
        return ((lambda p: ops.indexer_logits_paged(*args, provider=p)),
                (lambda a, e: _logits_close("logits", a, e)))
    if op == "indexer_topk_paged":
        args = _paged_indexer_inputs(g, device, [TOPK + 452, 700])
        lens = args[3].cpu()
        return ((lambda p: ops.indexer_topk_paged(*args, k=TOPK, provider=p)),
                (lambda a, e: _topk_overlap(a, e, lens)))
    if op == "topk_indices":
        # integer-valued logits: many exact ties, decided toward the lower column
        logits = torch.randint(-400, 400, (_TOPK_ROWS, _TOPK_COLS), generator=g).float()
        logits[1, 100:200] = float("-inf")
        logits[2, 5] = float("nan")
        logits[3, 7] = float("inf")
        logits = logits.to(device)
        starts = _i32([0, 10, 0, 500, 2990, 0], device)
        ends = _i32([_TOPK_COLS, 2800, 1500, _TOPK_COLS, _TOPK_COLS, 0], device)
        return ((lambda p: ops.topk_indices(logits, starts, ends, k=TOPK, provider=p)), _topk_exact)
    if op == "sparse_mla_prefill":
        n, t = TOPK + 500, 4
        kv = _mla_rows(g, device, n, probe.kv_format)
        q = (_randn(g, t, heads, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        idx = _sparse_indices(g, t, n, TOPK).unsqueeze(1).contiguous().to(device)

        def cmp(a, e):
            return "; ".join([
                _close("out", a[0], e[0], dtype=torch.bfloat16),
                _close("max_logits", a[1], e[1], dtype=torch.float32, atol=1e-3, rtol=1e-3, min_cos=0.99999),
                _close("lse", a[2], e[2], dtype=torch.float32, atol=1e-3, rtol=1e-3, min_cos=0.99999),
            ])
        return ((lambda p: ops.sparse_mla_prefill(q, kv, idx, sm_scale=SM_SCALE, fp8_dtype=fp8, provider=p)), cmp)
    if op == "sparse_mla_decode":
        b, num_pages = 3, (TOPK + 500) // PAGE + 1
        rows = _mla_rows(g, device, num_pages * PAGE, probe.kv_format)
        cache = rows.reshape(num_pages, PAGE, 1, rows.shape[-1])
        q = (_randn(g, b, 1, heads, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        idx = _sparse_indices(g, b, num_pages * PAGE, TOPK).unsqueeze(1).contiguous().to(device)

        def cmp(a, e):
            return "; ".join([
                _close("out", a[0], e[0], dtype=torch.bfloat16),
                _close("lse", a[1], e[1], dtype=torch.float32, atol=1e-3, rtol=1e-3, min_cos=0.99999),
            ])
        return ((lambda p: ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, fp8_dtype=fp8, provider=p)),
                cmp)
    if op == "store_indexer_k":
        n, pages = 150, 4
        k = _randn(g, n, INDEX_DIM, device=device).to(torch.bfloat16)
        slots = torch.randperm(pages * PAGE, generator=g)[:n].to(torch.int64)
        slots[3] = -1
        slots = slots.to(device)
        init = torch.randint(0, 256, (pages, PAGE * (INDEX_DIM + 4)), generator=g, dtype=torch.uint8).to(device)

        def call(p):
            buf = init.clone()
            ops.store_indexer_k(k, buf, slots, fp8_dtype=fp8, provider=p)
            return buf
        return call, _bytes_equal
    if op == "store_mla_kv":
        n, pages = 150, 4
        c_kv = _randn(g, n, 512, device=device).to(torch.bfloat16)
        k_rope = _randn(g, n, 64, device=device).to(torch.bfloat16)
        slots = torch.randperm(pages * PAGE, generator=g)[:n].to(torch.int64)
        slots[5] = -1
        slots = slots.to(device)
        if probe.kv_format == "bf16":
            init = _randn(g, pages, PAGE, 1, MLA_DIM, device=device).to(torch.bfloat16)
        else:
            init = torch.randint(0, 256, (pages, PAGE, 1, MLA_FP8_RECORD_BYTES), generator=g,
                                 dtype=torch.uint8).to(device)

        def call(p):
            buf = init.clone()
            ops.store_mla_kv(c_kv, k_rope, buf, slots, fp8_dtype=fp8, provider=p)
            return buf
        return call, _bytes_equal
    raise ValueError(f"probe: unknown op {op!r}")


def _bytes_equal(actual: torch.Tensor, expected: torch.Tensor) -> str:
    a = actual.contiguous().view(torch.uint8).cpu()
    e = expected.contiguous().view(torch.uint8).cpu()
    bad = int((a != e).sum())
    if bad:
        raise AssertionError(f"buffer: {bad} of {e.numel()} bytes differ from the reference")
    return f"byte-exact ({e.numel()} bytes)"


def _structure(probe: Probe, result: Result) -> str:
    """Shape sanity for the reference's own run (it is the definition: nothing to compare)."""
    def shapes(r):
        if isinstance(r, tuple):
            return ", ".join(f"{list(x.shape)} {str(x.dtype).replace('torch.', '')}" for x in r)
        return f"{list(r.shape)} {str(r.dtype).replace('torch.', '')}"
    tensors = result if isinstance(result, tuple) else (result,)
    for t in tensors:
        if t.is_floating_point() and bool(torch.isnan(t).any()):
            raise AssertionError(f"{probe.label}: the reference produced NaN")
    return f"definition; returned {shapes(result)}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ProbeResult:
    """One (probe, provider) cell.

    Attributes:
        probe / op / provider: what was checked.
        available: ``supports(case)`` returned no reason.
        reasons: why not (empty when available).
        selftest: "pass", "fail", "skip" (available but not run; ``detail`` says why) or ""
            (not available).
        detail: comparison figures, the error, or the skip reason.
        seconds: wall time of the provider's call (first call: includes JIT compilation).
        where: how and where it ran (:func:`execution_path`).
        chosen: this provider is the one a call of this probe would use (automatic choice,
            or the ``--provider`` preference).
    """

    probe: str
    op: str
    provider: str
    available: bool
    reasons: list[str]
    selftest: str = ""
    detail: str = ""
    seconds: float | None = None
    where: str = ""
    chosen: bool = False


@dataclasses.dataclass
class CheckReport:
    """Everything ``rocm-dsa check`` found (see :func:`run_check`)."""

    platform: dict[str, Any]
    versions: dict[str, str | None]
    providers: list[dict[str, Any]]
    results: list[ProbeResult]
    requested: str | None
    heads: int
    warmup: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def chosen_failures(self) -> list[ProbeResult]:
        """Self-test failures of the provider each probe would actually use."""
        return [r for r in self.results if r.chosen and r.selftest == "fail"]

    @property
    def requested_unavailable(self) -> bool:
        """A ``--provider`` was requested and it can run none of the probes here."""
        if not self.requested:
            return False
        return not any(r.available for r in self.results if r.provider == self.requested)

    @property
    def exit_code(self) -> int:
        """0 = fine; 1 = a chosen provider failed its self-test (or a warm-up step failed);
        2 = the requested provider cannot run any op on this machine."""
        if self.chosen_failures or any(w.get("status") == "fail" for w in self.warmup):
            return 1
        if self.requested_unavailable:
            return 2
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "versions": self.versions,
            "providers": self.providers,
            "requested_provider": self.requested,
            "mla_heads": self.heads,
            "results": [dataclasses.asdict(r) for r in self.results],
            "chosen": {r.probe: r.provider for r in self.results if r.chosen},
            "warmup": self.warmup,
            "exit_code": self.exit_code,
        }


def _provider_rows(names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for n in names:
        p = get_provider(n)
        why = p.unavailable_reason()
        rows.append({"name": n, "available": why is None, "reason": why or "",
                     "description": p.description, "ops": sorted(p.ops)})
    return rows


def _interpreter_skip(provider: str, device: torch.device) -> str | None:
    if provider == "triton" and device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton on a CPU runs only under TRITON_INTERPRET=1"
    return None


def run_check(
    device: torch.device | str | None = None,
    *,
    provider: str | None = None,
    heads: int = 16,
    ops_filter: Iterable[str] | None = None,
    selftest: bool = True,
    seed: int = 0,
    on_progress: Callable[[str], None] | None = None,
) -> CheckReport:
    """Availability of every provider for every probe, plus self-tests against the reference.

    Args:
        device: where to run (default: the current GPU, else the CPU).
        provider: a provider name (``--provider``): it becomes the chosen provider of every
            probe it supports (the others keep what a call would use: ``ROCM_DSA_BACKEND[_<OP>]``,
            else the automatic choice) and self-tests are limited to it and to those. None =
            what a call would use, and every available provider is self-tested.
        heads: MLA heads per TP rank used by the sparse-MLA probes (128 / TP; 16 = TP8).
        ops_filter: probe labels or op names to keep (None = all).
        selftest: False = availability only.
        seed: seed of the random inputs.
        on_progress: called with a short text before each self-test.
    Returns:
        :class:`CheckReport`. Never raises for a provider failure (it is recorded).
    Raises:
        ValueError: an unknown provider name, or ``heads`` < 1.
    """
    device = torch.device(device) if device is not None else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    if provider is not None and provider not in provider_names():
        raise ValueError(f"provider: expected one of {provider_names()}, got {provider!r}")
    if heads < 1:
        raise ValueError(f"heads: expected >= 1, got {heads}")
    keep = set(ops_filter) if ops_filter else None
    probes = [p for p in PROBES if keep is None or p.label in keep or p.op in keep]
    if keep is not None and not probes:
        raise ValueError(f"ops: expected op names or probe labels from {[p.label for p in PROBES]}, got {sorted(keep)}")
    names = provider_names()
    report = CheckReport(platform_info(device), versions(), _provider_rows(names), [], provider, heads)

    for probe in probes:
        case = probe_case(probe, device, heads)
        try:
            if provider is not None and not get_provider(provider).supports(case):
                chosen = provider
            else:  # what a call does: ROCM_DSA_BACKEND[_<OP>], else the automatic choice
                chosen = select(case).name
        except (ProviderError, ValueError):
            chosen = None
        built = None
        expected: Result = None
        ref_seconds: float | None = None
        for name in names:
            p = get_provider(name)
            reasons = p.supports(case)
            res = ProbeResult(probe.label, probe.op, name, not reasons, reasons, chosen=(name == chosen))
            report.results.append(res)
            if reasons:
                continue
            res.where = execution_path(name, device)
            if not selftest:
                res.selftest, res.detail = "skip", "self-tests disabled (--no-selftest)"
                continue
            if provider is not None and name not in (provider, chosen, "reference"):
                res.selftest, res.detail = "skip", f"only {provider!r} and its fallbacks are tested"
                continue
            skip = _interpreter_skip(name, device)
            if skip:
                res.selftest, res.detail = "skip", skip
                continue
            if on_progress:
                on_progress(f"{probe.label} / {name}")
            try:
                if built is None:
                    built = _build(probe, device, heads, seed)
                call, compare = built
                if expected is None:
                    t0 = time.perf_counter()
                    expected = call("reference")
                    _sync(device)
                    ref_seconds = time.perf_counter() - t0
                if name == "reference":
                    res.seconds = ref_seconds
                    res.detail = _structure(probe, expected)
                else:
                    t0 = time.perf_counter()
                    actual = call(name)
                    _sync(device)
                    res.seconds = time.perf_counter() - t0
                    res.detail = compare(actual, expected)
                res.selftest = "pass"
            except AssertionError as e:
                res.selftest, res.detail = "fail", str(e)
            except Exception as e:  # noqa: BLE001 - a crashing provider is a failed self-test
                res.selftest, res.detail = "fail", f"{type(e).__name__}: {e}"
    return report


# ---------------------------------------------------------------------------------------------
# ahead-of-time warm-up (Docker build)
# ---------------------------------------------------------------------------------------------
def _step(step: str, status: str, t0: float, detail: str) -> dict[str, Any]:
    return {"step": step, "status": status, "seconds": round(time.perf_counter() - t0, 2), "detail": detail}


def warmup(arch: str | None = None, *, on_progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Compile every kernel ahead of time so that the first request does not wait for a JIT.

    Two steps, neither needs a GPU (the Docker build runs them on a CPU-only builder):

    1. Triton (gfx942 / gfx950 only): every kernel configuration the Triton modules declare
       (:mod:`rocm_dsa.compile`) is compiled with Triton's AMD backend for ``arch``; Triton
       stores each binary in its cache (``TRITON_CACHE_DIR``), keyed by source, specialization,
       launch options and target, so a launch with the same configuration finds it there. A
       launch that specializes differently (another alignment or constexpr) compiles once on
       first use and is cached too.
    2. HIP: the torch extension is built with hipcc for ``PYTORCH_ROCM_ARCH`` (nvcc on a CUDA
       torch) into ``$ROCM_DSA_CACHE_DIR/hip`` (:func:`rocm_dsa.hipext.build.load`), where the
       ``hip`` provider loads it from.

    Args:
        arch: "gfx942" or "gfx950" (default: the detected arch; on other archs the Triton step
            is skipped: their kernels JIT on first use).
        on_progress: called with a line of text per step.
    Returns:
        [{"step", "status": "ok" | "skip" | "fail", "seconds", "detail"}]. "fail" = a kernel
        did not compile (``rocm-dsa check`` then exits 1); resource checks such as spills are
        ``rocm-dsa compile``'s business and do not fail the warm-up.
    Raises:
        ValueError: an ``arch`` that is neither gfx942, gfx950 nor the detected one.
    """
    detected = detect().arch
    arch = arch or detected
    if arch not in ("gfx942", "gfx950") and arch != detected:
        raise ValueError(f"arch: expected gfx942, gfx950 or the detected {detected!r}, got {arch!r}")
    steps: list[dict[str, Any]] = []

    t0 = time.perf_counter()
    if on_progress:
        on_progress(f"Triton kernels for {arch}")
    if arch not in ("gfx942", "gfx950"):
        steps.append(_step("triton", "skip", t0, f"ahead-of-time Triton compilation targets gfx942/gfx950; "
                                                 f"{arch} kernels compile on first use"))
    else:
        try:
            from .compile.triton_amd import report_rows

            rows = report_rows(arch)
            done = [r for r in rows if not r.skipped and not r.error]
            bad = [r for r in rows if r.error]
            skipped = [r for r in rows if r.skipped]
            detail = (f"{len(done)} kernel configs compiled for {arch} into "
                      f"{os.environ.get('TRITON_CACHE_DIR', '~/.triton/cache')}")
            if skipped:
                detail += f"; {len(skipped)} skipped ({'; '.join(sorted({r.skipped for r in skipped}))[:200]})"
            if bad:
                detail += "; FAILED: " + "; ".join(f"{r.module}/{r.config}: {r.error.splitlines()[-1][:160]}"
                                                  for r in bad[:5])
            steps.append(_step("triton", "fail" if bad else ("ok" if done else "skip"), t0, detail))
        except Exception as e:  # noqa: BLE001 - reported as a failed step
            steps.append(_step("triton", "fail", t0, f"{type(e).__name__}: {e}"[:400]))

    t0 = time.perf_counter()
    if on_progress:
        on_progress("HIP extension")
    try:
        from .hipext import build as hip_build
    except ImportError as e:
        steps.append(_step("hip", "skip", t0, f"HIP sources not in this version ({e})"))
        return steps
    why = hip_build.unavailable_reason(need_gpu=False)
    if why:
        steps.append(_step("hip", "skip", t0, why))
        return steps
    try:
        hip_build.load()
        rocm_arch = os.environ.get("PYTORCH_ROCM_ARCH") or os.environ.get("TORCH_CUDA_ARCH_LIST") or "visible GPUs"
        steps.append(_step("hip", "ok", t0, f"built for {rocm_arch} in {hip_build.build_dir()}"))
    except Exception as e:  # noqa: BLE001 - HipBuildError or a loader failure
        steps.append(_step("hip", "fail", t0, f"{type(e).__name__}: {str(e)[-400:]}"))
    return steps
