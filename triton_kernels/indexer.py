"""Lightning-indexer logits kernels (FP8 dot, ReLU, weighted head sum) and their launchers.

Ragged form (prefill): one program per (block of BLOCK_T query tokens, block of BLOCK_N keys).
The key tile is loaded once and reused for every head; for each head h the program computes
``relu(q[t, h] . k[s])`` as one FP8 ``tl.dot`` ([BLOCK_T, D] x [D, BLOCK_N], fp32 accumulate:
fp8 MFMA on gfx942/gfx950, wgmma on sm90) and adds it with weight ``weights[t, h]`` to a fp32
tile in the dot's own layout, so the head reduction needs no cross-lane traffic. Key blocks
outside every window of the token block write -inf without loading anything.

Paged form (decode / MTP): one program per (request, block of BLOCK_N key positions). The keys
are gathered through the block table from the page layout of :mod:`rocm_dsa.cache` (values
region, then scales region, per page); each of the request's NEXT_N query rows computes a
[H, D] x [D, BLOCK_N] dot, ReLU, weights and a sum over heads, sharing the key tile.

Pointer and offset math that can pass 2^31 (token x stride, page x page bytes, row x width of the
output) is done in int64. Semantics: DeepSeek-V3.2 ``fp8_index`` (inference/kernel.py); DeepGEMM
``fp8_mqa_logits`` (clean logits) and ``fp8_paged_mqa_logits`` test references.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import get_config

__all__ = ["indexer_logits", "indexer_logits_paged"]


@triton.jit
def _logits_indexer_kernel(
    q_ptr,  # fp8 [T, H, D]
    k_ptr,  # fp8 [N, D]
    k_scale_ptr,  # f32 [N]
    w_ptr,  # f32 [T, H]
    ks_ptr,  # i32 [T]
    ke_ptr,  # i32 [T]
    out_ptr,  # f32 [T, out_width] (column c of the output = key c0 + c)
    T,
    N,
    H,
    c0,  # first key column written by this launch
    n_cols,  # keys written: [c0, c0 + n_cols)
    stride_qt,
    stride_qh,
    stride_kn,
    stride_wt,
    stride_ot,
    D: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_N: tl.constexpr,
    FILL_OUTSIDE: tl.constexpr,  # write -inf for key blocks outside every window (False: leave them)
):
    pid_t = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_c = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # output columns
    offs_n = c0 + offs_c  # key positions
    offs_d = tl.arange(0, D)
    t_mask = offs_t < T
    c_mask = offs_c < n_cols
    n_mask = c_mask & (offs_n < N)
    t64 = offs_t.to(tl.int64)

    ks = tl.load(ks_ptr + offs_t, mask=t_mask, other=0)
    ke = tl.load(ke_ptr + offs_t, mask=t_mask, other=0)
    lo = tl.min(tl.where(t_mask, tl.maximum(ks, 0), N), axis=0)
    hi = tl.max(tl.where(t_mask, tl.minimum(ke, N), 0), axis=0)
    n0 = c0 + pid_n * BLOCK_N
    out_ptrs = out_ptr + t64[:, None] * stride_ot + offs_c[None, :]
    out_mask = t_mask[:, None] & c_mask[None, :]
    if (n0 >= hi) | (n0 + BLOCK_N <= lo):
        if FILL_OUTSIDE:
            tl.store(out_ptrs, tl.full([BLOCK_T, BLOCK_N], float("-inf"), tl.float32), mask=out_mask)
    else:
        # key tile as [D, BLOCK_N] (K-major operand), loaded once for all heads
        kt = tl.load(k_ptr + offs_n.to(tl.int64)[None, :] * stride_kn + offs_d[:, None],
                     mask=n_mask[None, :], other=0.0)
        k_scale = tl.load(k_scale_ptr + offs_n, mask=n_mask, other=0.0)
        q_ptrs = q_ptr + t64[:, None] * stride_qt + offs_d[None, :]
        w_ptrs = w_ptr + t64 * stride_wt
        acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
        for h in range(H):
            q = tl.load(q_ptrs + h * stride_qh, mask=t_mask[:, None], other=0.0)
            w = tl.load(w_ptrs + h, mask=t_mask, other=0.0)
            s = tl.dot(q, kt)
            acc += tl.maximum(s, 0.0) * w[:, None]
        logits = acc * k_scale[None, :]
        inside = (offs_n[None, :] >= ks[:, None]) & (offs_n[None, :] < ke[:, None]) & n_mask[None, :]
        tl.store(out_ptrs, tl.where(inside, logits, float("-inf")), mask=out_mask)


@triton.jit
def _logits_paged_indexer_kernel(
    q_ptr,  # fp8 [B, NEXT_N, H, D]
    kv_ptr,  # fp8 view of the cache [P, PAGE_SIZE * (D + 4)] (values region first)
    kv_scale_ptr,  # f32 view of the same bytes [P, PAGE_SIZE * (D + 4) / 4]
    w_ptr,  # f32 [B * NEXT_N, H]
    ctx_ptr,  # i32 [B]
    bt_ptr,  # i32 [B, max_pages]
    out_ptr,  # f32 [(b0 + B) * NEXT_N, W] rows of request b start at b * NEXT_N
    H,
    W,  # max_pages * PAGE_SIZE
    num_pages,  # pages in the cache: block-table entries outside [0, num_pages) are absent keys
    stride_qb,
    stride_qn,
    stride_qh,
    stride_page,  # bytes per page = PAGE_SIZE * (D + 4)
    stride_btb,
    stride_wr,
    stride_or,
    D: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    NEXT_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    FILL_OUTSIDE: tl.constexpr,  # write -inf for blocks past the context (False: leave them)
):
    b = tl.program_id(0)
    pid_n = tl.program_id(1)
    length = tl.minimum(tl.load(ctx_ptr + b), W)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_in = offs_n < W
    row0 = b.to(tl.int64) * NEXT_N
    if pid_n * BLOCK_N >= length:
        if FILL_OUTSIDE:
            for j in tl.static_range(NEXT_N):
                    tl.store(out_ptr + (row0 + j) * stride_or + offs_n,
                         tl.full([BLOCK_N], float("-inf"), tl.float32), mask=n_in)
    else:
        page = tl.load(bt_ptr + b.to(tl.int64) * stride_btb + offs_n // PAGE_SIZE, mask=offs_n < length, other=0)
        # never read outside the cache (one unsigned compare also rejects negative entries)
        n_mask = (offs_n < length) & (page.to(tl.uint32) < num_pages.to(tl.uint32))
        page_base = page.to(tl.int64) * stride_page
        in_page = offs_n % PAGE_SIZE
        offs_d = tl.arange(0, D)
        kt = tl.load(kv_ptr + (page_base + in_page * D)[None, :] + offs_d[:, None], mask=n_mask[None, :],
                     other=0.0)  # [D, BLOCK_N]
        k_scale = tl.load(kv_scale_ptr + (page_base + PAGE_SIZE * D) // 4 + in_page, mask=n_mask, other=0.0)
        offs_h = tl.arange(0, BLOCK_H)
        h_mask = offs_h < H
        for j in tl.static_range(NEXT_N):
            q = tl.load(q_ptr + b.to(tl.int64) * stride_qb + j * stride_qn + offs_h[:, None] * stride_qh
                        + offs_d[None, :], mask=h_mask[:, None], other=0.0)  # [BLOCK_H, D]
            w = tl.load(w_ptr + (row0 + j) * stride_wr + offs_h, mask=h_mask, other=0.0)
            s = tl.dot(q, kt)  # [BLOCK_H, BLOCK_N]
            logits = tl.sum(tl.maximum(s, 0.0) * w[:, None], axis=0) * k_scale
            visible = offs_n <= length - NEXT_N + j
            tl.store(out_ptr + (row0 + j) * stride_or + offs_n,
                     tl.where(visible & n_mask, logits, float("-inf")), mask=n_in)


def _launch_ragged(q_fp8, k_fp8, k_scale, weights, ks, ke, out, c0: int, n_cols: int, arch: str,
                   fill_outside: bool = True) -> None:
    """Write logits of keys [c0, c0 + n_cols) into ``out`` [T, >= n_cols] (column c = key c0 + c).

    ``fill_outside=False`` leaves key blocks outside every window of a token block unwritten
    (the fused top-k never reads them)."""
    t, h, d = q_fp8.shape
    n = k_fp8.shape[0]
    if t == 0 or n_cols == 0:
        return
    cfg = get_config("indexer_logits", arch, heads=h, rows=t, columns=n_cols)
    bt, bn = cfg.meta["BLOCK_T"], cfg.meta["BLOCK_N"]
    grid = (triton.cdiv(t, bt), triton.cdiv(n_cols, bn))
    _logits_indexer_kernel[grid](
        q_fp8, k_fp8, k_scale, weights, ks, ke, out,
        t, n, h, c0, n_cols,
        q_fp8.stride(0), q_fp8.stride(1), k_fp8.stride(0), weights.stride(0), out.stride(0),
        D=d, BLOCK_T=bt, BLOCK_N=bn, FILL_OUTSIDE=fill_outside, **cfg.options,
    )


def indexer_logits(q_fp8: torch.Tensor, k_fp8: torch.Tensor, k_scale: torch.Tensor, weights: torch.Tensor,
                   ks: torch.Tensor, ke: torch.Tensor, *, arch: str) -> torch.Tensor:
    """Ragged indexer logits (prefill); the ``triton`` provider's ``indexer_logits``.

    Args:
        q_fp8: [T, H, D] FP8 (e4m3fn or e4m3fnuz), D a power of two (128).
        k_fp8: [N, D] same FP8 dtype. k_scale: [N] float32.
        weights: [T, H] float32 (q_scale * H^-0.5 * D^-0.5 folded in).
        ks, ke: [T] int32 key window [ks, ke) of each token.
        arch: target arch for the config lookup ("gfx942", "sm90", "cpu", ...).
    Returns:
        [T, N] float32: ``k_scale[s] * sum_h weights[t, h] * relu(q[t, h] . k[s])`` inside the
        window, -inf elsewhere (DeepGEMM ``fp8_mqa_logits`` with clean logits).
    Arguments are validated by :func:`rocm_dsa.ops.indexer_logits`.
    """
    t, n = q_fp8.shape[0], k_fp8.shape[0]
    out = torch.empty(t, n, dtype=torch.float32, device=q_fp8.device)
    _launch_ragged(q_fp8, k_fp8, k_scale, weights, ks, ke, out, 0, n, arch)
    return out


def _launch_paged(q_fp8, buf, weights, context_lens, block_table, out, arch: str,
                  fill_outside: bool = True) -> None:
    """Write paged logits of all requests of ``q_fp8`` into ``out`` [B * next_n, W].

    ``fill_outside=False`` leaves blocks past each context unwritten (the fused top-k never
    reads them)."""
    b, next_n, h, d = q_fp8.shape
    page_size = buf.shape[1] // (d + 4)
    width = block_table.shape[1] * page_size
    if b == 0 or width == 0:
        return
    cfg = get_config("indexer_logits_paged", arch, heads=h, next_n=next_n, rows=b, columns=width)
    bn = cfg.meta["BLOCK_N"]
    grid = (b, triton.cdiv(width, bn))
    _logits_paged_indexer_kernel[grid](
        q_fp8, buf.view(q_fp8.dtype), buf.view(torch.float32), weights, context_lens, block_table, out,
        h, width, buf.shape[0],
        q_fp8.stride(0), q_fp8.stride(1), q_fp8.stride(2), buf.stride(0), block_table.stride(0),
        weights.stride(0), out.stride(0),
        D=d, PAGE_SIZE=page_size, NEXT_N=next_n, BLOCK_H=max(16, triton.next_power_of_2(h)), BLOCK_N=bn,
        FILL_OUTSIDE=fill_outside, **cfg.options,
    )


def indexer_logits_paged(q_fp8: torch.Tensor, buf: torch.Tensor, weights: torch.Tensor,
                         context_lens: torch.Tensor, block_table: torch.Tensor, *, arch: str) -> torch.Tensor:
    """Paged indexer logits (decode / MTP); the ``triton`` provider's ``indexer_logits_paged``.

    Args:
        q_fp8: [B, next_n, H, D] FP8 (any next_n >= 1).
        buf: [num_pages, page_size * (D + 4)] uint8 indexer key cache (:mod:`rocm_dsa.cache`
            layout), keys in ``q_fp8``'s FP8 dtype.
        weights: [B * next_n, H] float32.
        context_lens: [B] int32 (the next_n new tokens included). block_table: [B, max_pages] int32.
        arch: target arch for the config lookup.
    Returns:
        [B * next_n, max_pages * page_size] float32; row b*next_n + j sees positions
        0 .. context_lens[b] - next_n + j, -inf elsewhere (DeepGEMM ``fp8_paged_mqa_logits``
        reference with the causal MTP mask).
    """
    b, next_n = q_fp8.shape[:2]
    width = block_table.shape[1] * (buf.shape[1] // (q_fp8.shape[3] + 4))
    out = torch.empty(b * next_n, width, dtype=torch.float32, device=q_fp8.device)
    _launch_paged(q_fp8, buf, weights, context_lens, block_table, out, arch)
    return out


def compile_specs(arch: str) -> list:
    """Ahead-of-time AMD compile specs (``rocm-dsa compile``) at DeepSeek-V3.2 shapes: H = 64
    indexer heads (and 32 for GLM-style models), D = 128, prefill N = 65536, decode pages of 64
    with next_n 1 and 2; block sizes from the same per-arch configs as the launchers."""
    from rocm_dsa.compile import CompileSpec

    fp8 = "*fp8e4b8" if arch == "gfx942" else "*fp8e4nv"
    specs = []
    for h in (64, 32):
        cfg = get_config("indexer_logits", arch, heads=h, rows=4096, columns=65536)
        o = cfg.options
        specs.append(CompileSpec(
            name=f"indexer_logits H={h} BLOCK_T={cfg.meta['BLOCK_T']} BLOCK_N={cfg.meta['BLOCK_N']}",
            fn=_logits_indexer_kernel,
            signature={"q_ptr": fp8, "k_ptr": fp8, "k_scale_ptr": "*fp32", "w_ptr": "*fp32", "ks_ptr": "*i32",
                       "ke_ptr": "*i32", "out_ptr": "*fp32", "T": "i32", "N": "i32", "H": "i32", "c0": "i32",
                       "n_cols": "i32", "stride_qt": "i32", "stride_qh": "i32", "stride_kn": "i32",
                       "stride_wt": "i32", "stride_ot": "i32"},
            constexprs={"D": 128, "BLOCK_T": cfg.meta["BLOCK_T"], "BLOCK_N": cfg.meta["BLOCK_N"],
                        "FILL_OUTSIDE": True},
            num_warps=o.get("num_warps", 4), num_stages=o.get("num_stages", 2),
            waves_per_eu=o.get("waves_per_eu", 0), matrix_instr_nonkdim=o.get("matrix_instr_nonkdim", 0),
            kpack=o.get("kpack", 1),
            aligned=("stride_qt", "stride_qh", "stride_kn", "stride_wt", "stride_ot"),
            large_tensors=("out_ptr",), requires_fp8_mfma=arch == "gfx942",
            note=cfg.source))
    for next_n in (1, 2):
        cfg = get_config("indexer_logits_paged", arch, heads=64, next_n=next_n, rows=64, columns=131072)
        o = cfg.options
        specs.append(CompileSpec(
            name=f"indexer_logits_paged H=64 next_n={next_n} BLOCK_N={cfg.meta['BLOCK_N']}",
            fn=_logits_paged_indexer_kernel,
            signature={"q_ptr": fp8, "kv_ptr": fp8, "kv_scale_ptr": "*fp32", "w_ptr": "*fp32", "ctx_ptr": "*i32",
                       "bt_ptr": "*i32", "out_ptr": "*fp32", "H": "i32", "W": "i32", "num_pages": "i32",
                       "stride_qb": "i32",
                       "stride_qn": "i32", "stride_qh": "i32", "stride_page": "i32", "stride_btb": "i32",
                       "stride_wr": "i32", "stride_or": "i32"},
            constexprs={"D": 128, "PAGE_SIZE": 64, "NEXT_N": next_n, "BLOCK_H": 64, "BLOCK_N": cfg.meta["BLOCK_N"],
                        "FILL_OUTSIDE": True},
            num_warps=o.get("num_warps", 4), num_stages=o.get("num_stages", 2),
            waves_per_eu=o.get("waves_per_eu", 0), matrix_instr_nonkdim=o.get("matrix_instr_nonkdim", 0),
            kpack=o.get("kpack", 1),
            aligned=("stride_qb", "stride_qn", "stride_qh", "stride_page", "stride_wr", "stride_or"),
            large_tensors=("kv_ptr", "kv_scale_ptr", "out_ptr"), requires_fp8_mfma=arch == "gfx942",
            note=cfg.source))
    return specs
