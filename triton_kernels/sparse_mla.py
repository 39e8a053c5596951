"""Triton sparse MLA (DeepSeek-V3.2 DSA attention in the absorbed 576/512 form): prefill and decode.

One kernel body serves both phases. A program owns one query row (a prefill token, or one
(request, MTP position) of decode), one block of ``BLOCK_H`` heads and one split of the row's
top-k list. All heads of a row share the row's indices, so the heads are the M dimension of the
MFMA / MMA dots: each gathered latent row is read once per head block (once per query row when
``BLOCK_H >= H``), not once per head, and the head blocks of one row are adjacent programs, so
after the first block the rows come from L2 rather than HBM. The online softmax runs in the log2
domain over blocks of ``BLOCK_K`` keys. By default the 576 dims are processed as four 128-wide
latent tiles plus the 64 rope dims and the output accumulator is kept as four [BLOCK_H, 128]
tiles, so no tile ever needs a [BLOCK_K, 576] slab in LDS at once (a 64x576 bf16 tile alone would
be 72 KiB, over gfx942's 64 KiB); ``WIDE_LATENT`` (Hopper) uses one 512-wide tile instead.

FP8 caches (656-byte records: 512 e4m3 values, 4 fp32 tile scales, 64 bf16 rope values) are
decoded in-kernel exactly: e4m3 values convert to bf16 without rounding, and the stored fp32
scales (any value, not only powers of two) are applied in fp32 — to the partial score of each
128-dim tile for q.k, and to the probabilities of each output tile for p.v — never folded into
bf16 operands.

Decode splits the top-k list over ``num_splits`` programs (split-K) when there are too few rows
to fill the GPU; each split writes a normalized fp32 partial output and its log2 LSE, and
``_merge_sparse_mla_kernel`` combines them (all of a row's splits in flight at once, so small
batches can split finely). With one split the kernel writes the final output.

Tiles are config data (``rocm_dsa/configs/<arch>/sparse_mla_{prefill,decode,merge}.json``). On
CDNA, Triton's AMD matmul pass puts every wave of a chained q.k -> p.v along M, so a head block is
16 heads per wave (16x16 MFMA): each wave keeps its heads' q (72 VGPRs) and 16x512 fp32 output
(128 VGPRs); 128 heads in one workgroup would need > 256 VGPRs per wave, so H=128 runs as two
64-head blocks (no spills at any head count on gfx942/gfx950). On Hopper (H200,
scripts/bench_sparse_mla.py) H >= 64 runs as 64-head blocks on two wgmma warp groups: with
``UNCHAIN_QK`` the q.k dots are independent and the softmax sits behind a runtime branch, which
keeps Triton's NVIDIA layout heuristic from stacking both groups on the head rows (it does that
for a dot whose result reaches another dot, and both groups then computed all of q.k), and
``WIDE_LATENT`` (bf16 rows; 224 KiB of shared memory per program at BLOCK_H = BLOCK_K = 64 with two
KV buffers, within Hopper's 227 KiB) makes the 512 latent dims one tile, so a key
block is one q.k and one p.v dot per group. H <= 16 decode runs one 16-head mma.sync program per
SM with two KV buffers (3 stages): the next block's gather is in flight while the current one is
computed.

On CDNA, workgroup i runs on XCD i % 8 and each XCD has its own L2, so ``NUM_XCDS`` (config
``num_xcds``) renumbers the programs for each XCD to run a contiguous range: the head blocks of
one row, which gather the same KV rows, then share an L2 (a permutation of the work; any value is
correct).

Invalid indices (< 0 or >= number of cache rows, anywhere in the row) are masked: their loads are
predicated off and their scores are -inf. A row without any valid index produces out = 0,
lse = +inf, max_logits = -inf and never NaN. Cache addressing uses 64-bit row offsets.

Semantics: FlashMLA ``flash_mla_sparse_fwd`` (prefill: out, max_logits, natural-log lse) and
``flash_mla_with_kvcache(..., indices=...)`` (sparse decode, lse as [B, H, s_q]) test references;
rocm_dsa.backends.reference is the definition used by the tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..cache import KV_LORA_RANK, MLA_DIM, mla_cache_rows
from ..fp8 import check_fp8_dtype
from ..platform import ARCHS
from ._common import get_config, interpreting, is_hip

__all__ = ["sparse_mla_prefill", "sparse_mla_decode", "plan_splits", "compile_specs"]

_LOG2E = 1.4426950408889634
_LN2 = tl.constexpr(0.6931471805599453)

#: how e4m3 bytes become bf16 in the kernel (constexpr FP8_DECODE)
_DECODE_BITS, _DECODE_E4M3FN, _DECODE_E4M3FNUZ = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# device helpers
# ---------------------------------------------------------------------------------------------
@triton.jit
def _e4m3_to_bf16(b, FP8_DECODE: tl.constexpr):
    """b: uint8 e4m3 bytes -> bf16 values (exact; e4m3 is a subset of bf16).

    FP8_DECODE 1 / 2: Triton's native e4m3fn / e4m3fnuz conversion (hardware on NVIDIA and
    gfx942/gfx950). 0: integer decoding of e4m3fnuz for targets without a native fnuz type
    (NVIDIA): normals rebias the exponent, subnormals are m * 2**-10.
    """
    if FP8_DECODE == 1:
        v = b.to(tl.float8e4nv, bitcast=True).to(tl.bfloat16)
    elif FP8_DECODE == 2:
        v = b.to(tl.float8e4b8, bitcast=True).to(tl.bfloat16)
    else:
        bi = b.to(tl.int32)
        mag = bi & 0x7F
        normal = ((mag << 20) + ((127 - 8) << 23)).to(tl.float32, bitcast=True)
        sub = mag.to(tl.float32) * 0.0009765625  # 2**-10
        v = tl.where(mag >= 8, normal, sub)
        v = tl.where((bi & 0x80) != 0, -v, v).to(tl.bfloat16)
    return v


@triton.jit
def _mma(a, b, acc, UPCAST: tl.constexpr):
    """acc + a @ b with fp32 accumulation. UPCAST (CPU interpreter only) feeds the dot fp32
    copies of the bf16 operands: Triton's interpreter multiplies bf16 operands as raw uint16
    bits. The products of bf16 values are exact in fp32 either way."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        return tl.dot(a, b, acc)


@triton.jit
def _load_latent(kv_ptr, row, vmask, COL: tl.constexpr, KV_FP8: tl.constexpr, FP8_DECODE: tl.constexpr):
    """Latent dims [COL, COL+128) of the gathered rows -> [BLOCK_K, 128] bf16 (FP8 decoded
    exactly, unscaled); masked rows read as 0."""
    d = tl.arange(0, 128)
    if KV_FP8:
        v = _e4m3_to_bf16(tl.load(kv_ptr + row[:, None] * 656 + COL + d[None, :], mask=vmask, other=0), FP8_DECODE)
    else:
        v = tl.load(kv_ptr + row[:, None] * 576 + COL + d[None, :], mask=vmask, other=0.0)
    return v


@triton.jit
def _load_idx(idx_row, k0, k_hi, BLOCK_K: tl.constexpr):
    """Entries [k0, k0 + BLOCK_K) of a row's top-k list; -1 (invalid) at and beyond k_hi."""
    kk = k0 + tl.arange(0, BLOCK_K)
    return tl.load(idx_row + kk, mask=kk < k_hi, other=-1)


@triton.jit
def _load_q(q_lat, q_rope, qmask):
    """The head block's query: four [BLOCK_H, 128] latent tiles and the [BLOCK_H, 64] rope."""
    q0 = tl.load(q_lat, mask=qmask, other=0.0)
    q1 = tl.load(q_lat + 128, mask=qmask, other=0.0)
    q2 = tl.load(q_lat + 256, mask=qmask, other=0.0)
    q3 = tl.load(q_lat + 384, mask=qmask, other=0.0)
    qr = tl.load(q_rope, mask=qmask, other=0.0)
    return q0, q1, q2, q3, qr


@triton.jit
def _qk_add(s, q, k, zero, UNCHAIN_QK: tl.constexpr, UPCAST: tl.constexpr):
    """s + q . k^T for one latent tile: chained through the dot's accumulator, or with
    UNCHAIN_QK as an independent dot (accumulator ``zero``) added afterwards."""
    if UNCHAIN_QK:
        return s + _mma(q, tl.trans(k), zero, UPCAST)
    else:
        return _mma(q, tl.trans(k), s, UPCAST)


@triton.jit
def _softmax_block(s, m_i, m_use):
    """One key block of the online softmax (log2 domain): the rescale of the running sums, the
    block's probabilities in fp32 and bf16, and their row sums."""
    alpha = tl.exp2(m_i - m_use)
    p = tl.exp2(s - m_use[:, None])
    return alpha, p, tl.sum(p, axis=1), p.to(tl.bfloat16)


@triton.jit
def _xcd_grouped(lin, total, NUM_XCDS: tl.constexpr):
    """Logical program id of the workgroup dispatched ``lin``-th of ``total`` when workgroup i
    runs on XCD ``i % NUM_XCDS`` (CDNA3/4 dispatch): each XCD gets one contiguous logical range,
    in XCD order; the first ``full`` XCDs hold ``per = cdiv(total, NUM_XCDS)`` ids each and the
    rest ``per - 1``. A bijection of [0, total) for any ``NUM_XCDS >= 1``; the identity when
    ``total <= NUM_XCDS``."""
    per = tl.cdiv(total, NUM_XCDS)
    full = total - (per - 1) * NUM_XCDS  # XCDs holding `per` ids (the others per - 1)
    xcd = lin % NUM_XCDS
    k = lin // NUM_XCDS
    return tl.where(xcd < full, xcd * per + k, full * per + (xcd - full) * (per - 1) + k)


@triton.jit
def _fwd_sparse_mla_kernel(
    q_ptr,          # bf16 [R, H, 576]
    kv_ptr,         # bf16 [N, 576] rows | uint8 [N, 656] FP8 records
    kv_word_ptr,    # fp32 view of the FP8 records [N, 164] (tile scales); = kv_ptr for bf16
    kv_half_ptr,    # bf16 view of the FP8 records [N, 328] (rope);        = kv_ptr for bf16
    idx_ptr,        # int32 [R, topk]
    out_ptr,        # bf16 [R, H, 512] | SPLIT_K: fp32 [R, splits, H, 512] normalized partials
    lse_ptr,        # fp32 final lse (natural log) at (r // s_q, h, r % s_q) strides | SPLIT_K: [R, splits, H] log2
    maxl_ptr,       # fp32 [R, H] max logits (not SPLIT_K)
    n_rows,         # N: rows of the cache; index >= N is invalid
    topk,
    num_heads,
    keys_per_split,
    sm_scale_log2,  # sm_scale * log2(e)
    stride_qr, stride_qh,
    stride_ir,
    stride_or, stride_os, stride_oh,
    stride_lb, stride_lj, stride_lh, stride_ls,
    stride_mr,
    s_q,            # decode tokens per request (1 for prefill): lse row r -> (r // s_q, r % s_q)
    KV_FP8: tl.constexpr,
    FP8_DECODE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    Q_IN_LOOP: tl.constexpr = False,
    IDX_AHEAD: tl.constexpr = False,
    UNCHAIN_QK: tl.constexpr = False,
    WIDE_LATENT: tl.constexpr = False,
    NUM_XCDS: tl.constexpr = 1,
):
    # grid (rows x head blocks, splits), head blocks fastest. The head blocks of one query row
    # are adjacent programs: they gather the same KV rows, so all but the first find them in L2
    # instead of HBM. On CDNA, consecutive workgroups go to different XCDs (each with its own
    # L2); NUM_XCDS > 1 renumbers the programs so that each XCD runs a contiguous range (a
    # permutation of the work: any value is correct, the right one keeps the L2 reuse). The
    # renumbering stays behind the constexpr: a 1-D grid decoded for every target made H=16
    # B=128 decode 4-5 % slower on the H200 (docs/results/sparse-mla-merge-h200-v4, call7)
    num_hb = tl.cdiv(num_heads, BLOCK_H)
    pid = tl.program_id(0)
    pid_s = tl.program_id(1)
    if NUM_XCDS > 1:
        n_rh = tl.num_programs(0)
        lin = _xcd_grouped(pid + pid_s * n_rh, n_rh * tl.num_programs(1), NUM_XCDS)
        pid_s = lin // n_rh
        pid = lin - pid_s * n_rh
    pid_r = pid // num_hb
    pid_h = pid - pid_r * num_hb
    r64 = pid_r.to(tl.int64)

    h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = h < num_heads
    d = tl.arange(0, 128)
    dr = tl.arange(0, 64)
    # WIDE_LATENT (bf16 rows): the 512 latent dims are one [*, 512] tile for q, the gathered rows
    # and the output (one q.k dot and one p.v dot per key block instead of four each)
    d5 = tl.arange(0, 512)
    q_head = q_ptr + r64 * stride_qr + h[:, None] * stride_qh
    q_lat = q_head + d[None, :]   # [BLOCK_H, 128] piece 0
    q_rope = q_head + 512 + dr[None, :]
    q_wide = q_head + d5[None, :]
    qmask = h_ok[:, None]
    # queries of this head block stay resident (registers / shared memory) for the key loop, or
    # with Q_IN_LOOP are re-read (from L1/L2) every key block, which frees their registers
    if not Q_IN_LOOP:
        if WIDE_LATENT:
            qw = tl.load(q_wide, mask=qmask, other=0.0)
            qr = tl.load(q_rope, mask=qmask, other=0.0)
        else:
            q0, q1, q2, q3, qr = _load_q(q_lat, q_rope, qmask)

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    if WIDE_LATENT:
        accw = tl.zeros([BLOCK_H, 512], tl.float32)
    else:
        acc0 = tl.zeros([BLOCK_H, 128], tl.float32)
        acc1 = tl.zeros([BLOCK_H, 128], tl.float32)
        acc2 = tl.zeros([BLOCK_H, 128], tl.float32)
        acc3 = tl.zeros([BLOCK_H, 128], tl.float32)

    if UNCHAIN_QK:
        # a zero the compiler cannot see as a constant: Triton folds `dot(a, b, 0) + c` into
        # `dot(a, b, c)`, which would chain the q.k dots again
        qk_zero = tl.zeros([BLOCK_H, BLOCK_K], tl.float32) * sm_scale_log2
    else:
        qk_zero = tl.zeros([BLOCK_H, BLOCK_K], tl.float32)
    k_lo = pid_s * keys_per_split
    k_hi = tl.minimum(k_lo + keys_per_split, topk)
    idx_row = idx_ptr + r64 * stride_ir
    if IDX_AHEAD:  # the next block's indices are loaded one iteration ahead (loop-carried)
        idx_next = _load_idx(idx_row, k_lo, k_hi, BLOCK_K)
    for k0 in range(k_lo, k_hi, BLOCK_K):
        if IDX_AHEAD:
            idx = idx_next
            idx_next = _load_idx(idx_row, k0 + BLOCK_K, k_hi, BLOCK_K)
        else:
            idx = _load_idx(idx_row, k0, k_hi, BLOCK_K)
        valid = (idx >= 0) & (idx < n_rows)
        row = tl.where(valid, idx, 0).to(tl.int64)
        vmask = valid[:, None]
        if Q_IN_LOOP:
            if WIDE_LATENT:
                qw = tl.load(q_wide, mask=qmask, other=0.0)
                qr = tl.load(q_rope, mask=qmask, other=0.0)
            else:
                q0, q1, q2, q3, qr = _load_q(q_lat, q_rope, qmask)

        # scores [BLOCK_H, BLOCK_K] = q . k over the latent tiles + rope (fp32 accumulation)
        if KV_FP8:
            kr = tl.load(kv_half_ptr + row[:, None] * 328 + 264 + dr[None, :], mask=vmask, other=0.0)
            sc = kv_word_ptr + row * 164 + 128
            sc0 = tl.load(sc, mask=valid, other=0.0)
            sc1 = tl.load(sc + 1, mask=valid, other=0.0)
            sc2 = tl.load(sc + 2, mask=valid, other=0.0)
            sc3 = tl.load(sc + 3, mask=valid, other=0.0)
            zero = tl.zeros([BLOCK_H, BLOCK_K], tl.float32)
            s = _mma(qr, tl.trans(kr), zero, UPCAST)
            v0 = _load_latent(kv_ptr, row, vmask, 0, KV_FP8, FP8_DECODE)
            s += _mma(q0, tl.trans(v0), zero, UPCAST) * sc0[None, :]
            v1 = _load_latent(kv_ptr, row, vmask, 128, KV_FP8, FP8_DECODE)
            s += _mma(q1, tl.trans(v1), zero, UPCAST) * sc1[None, :]
            v2 = _load_latent(kv_ptr, row, vmask, 256, KV_FP8, FP8_DECODE)
            s += _mma(q2, tl.trans(v2), zero, UPCAST) * sc2[None, :]
            v3 = _load_latent(kv_ptr, row, vmask, 384, KV_FP8, FP8_DECODE)
            s += _mma(q3, tl.trans(v3), zero, UPCAST) * sc3[None, :]
        else:
            # bf16: with UNCHAIN_QK every q.k dot is independent and the partial scores are
            # summed, so no q.k dot feeds another dot
            kr = tl.load(kv_ptr + row[:, None] * 576 + 512 + dr[None, :], mask=vmask, other=0.0)
            if WIDE_LATENT:
                vw = tl.load(kv_ptr + row[:, None] * 576 + d5[None, :], mask=vmask, other=0.0)
            s = _mma(qr, tl.trans(kr), qk_zero, UPCAST)
            if WIDE_LATENT:
                s = _qk_add(s, qw, vw, qk_zero, UNCHAIN_QK, UPCAST)
            else:
                v0 = _load_latent(kv_ptr, row, vmask, 0, KV_FP8, FP8_DECODE)
                s = _qk_add(s, q0, v0, qk_zero, UNCHAIN_QK, UPCAST)
                v1 = _load_latent(kv_ptr, row, vmask, 128, KV_FP8, FP8_DECODE)
                s = _qk_add(s, q1, v1, qk_zero, UNCHAIN_QK, UPCAST)
                v2 = _load_latent(kv_ptr, row, vmask, 256, KV_FP8, FP8_DECODE)
                s = _qk_add(s, q2, v2, qk_zero, UNCHAIN_QK, UPCAST)
                v3 = _load_latent(kv_ptr, row, vmask, 384, KV_FP8, FP8_DECODE)
                s = _qk_add(s, q3, v3, qk_zero, UNCHAIN_QK, UPCAST)

        # online softmax in the log2 domain; invalid keys score -inf
        s = tl.where(valid[None, :], s * sm_scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        if UNCHAIN_QK:
            # alpha, the row sums and bf16 p come out of a runtime-true branch, which hides the
            # q.k -> p.v chain from Triton's NVIDIA layout heuristic: warpsPerTileV3 puts every
            # warp on the rows of a dot whose result reaches another dot, so a 64-head tile on
            # 8 warps (two warp groups) computed all of q.k in both groups; behind the branch q.k
            # splits its key columns over the groups. Both branches compute the same values (a
            # constant in the other branch would cost shared memory for its layout conversion).
            # FP8 records: their q.k dots are independent already (each is scaled by its tile's
            # scale); the branch alone splits them over the groups (sm90: 52 instead of 80 wgmma).
            if num_heads > 0:
                alpha, p, l_blk, pb = _softmax_block(s, m_i, m_use)
            else:
                alpha, p, l_blk, pb = _softmax_block(s, m_i, m_use)
        else:
            alpha, p, l_blk, pb = _softmax_block(s, m_i, m_use)
        l_i = l_i * alpha + l_blk
        m_i = m_new

        # out += p . v per latent tile (FP8: the 128-dim tile's scale multiplies p in fp32)
        if KV_FP8:
            acc0 = _mma((p * sc0[None, :]).to(tl.bfloat16), v0, acc0 * alpha[:, None], UPCAST)
            acc1 = _mma((p * sc1[None, :]).to(tl.bfloat16), v1, acc1 * alpha[:, None], UPCAST)
            acc2 = _mma((p * sc2[None, :]).to(tl.bfloat16), v2, acc2 * alpha[:, None], UPCAST)
            acc3 = _mma((p * sc3[None, :]).to(tl.bfloat16), v3, acc3 * alpha[:, None], UPCAST)
        elif WIDE_LATENT:
            accw = _mma(pb, vw, accw * alpha[:, None], UPCAST)
        else:
            acc0 = _mma(pb, v0, acc0 * alpha[:, None], UPCAST)
            acc1 = _mma(pb, v1, acc1 * alpha[:, None], UPCAST)
            acc2 = _mma(pb, v2, acc2 * alpha[:, None], UPCAST)
            acc3 = _mma(pb, v3, acc3 * alpha[:, None], UPCAST)

    has = l_i > 0.0
    inv = 1.0 / tl.where(has, l_i, 1.0)
    lse2 = m_i + tl.log2(tl.where(has, l_i, 1.0))
    if not SPLIT_K:
        o_head = out_ptr + r64 * stride_or + h[:, None] * stride_oh
        if WIDE_LATENT:
            tl.store(o_head + d5[None, :], (accw * inv[:, None]).to(tl.bfloat16), mask=qmask)
        else:
            o_row = o_head + d[None, :]
            tl.store(o_row, (acc0 * inv[:, None]).to(tl.bfloat16), mask=qmask)
            tl.store(o_row + 128, (acc1 * inv[:, None]).to(tl.bfloat16), mask=qmask)
            tl.store(o_row + 256, (acc2 * inv[:, None]).to(tl.bfloat16), mask=qmask)
            tl.store(o_row + 384, (acc3 * inv[:, None]).to(tl.bfloat16), mask=qmask)
        lse = tl.where(has, lse2 * _LN2, float("inf"))
        l_off = (pid_r // s_q).to(tl.int64) * stride_lb + (pid_r % s_q) * stride_lj + h * stride_lh
        tl.store(lse_ptr + l_off, lse, mask=h_ok)
        maxl = tl.where(has, m_i * _LN2, float("-inf"))
        tl.store(maxl_ptr + r64 * stride_mr + h, maxl, mask=h_ok)
    else:
        o_head = out_ptr + r64 * stride_or + pid_s * stride_os + h[:, None] * stride_oh
        if WIDE_LATENT:
            tl.store(o_head + d5[None, :], accw * inv[:, None], mask=qmask)
        else:
            o_row = o_head + d[None, :]
            tl.store(o_row, acc0 * inv[:, None], mask=qmask)
            tl.store(o_row + 128, acc1 * inv[:, None], mask=qmask)
            tl.store(o_row + 256, acc2 * inv[:, None], mask=qmask)
            tl.store(o_row + 384, acc3 * inv[:, None], mask=qmask)
        part = tl.where(has, lse2, float("-inf"))
        tl.store(lse_ptr + r64 * stride_lb + pid_s * stride_ls + h * stride_lh, part, mask=h_ok)


@triton.jit
def _merge_sparse_mla_kernel(
    part_ptr,       # fp32 [R, splits, H, 512] normalized partial outputs
    plse_ptr,       # fp32 [R, splits, H] log2 LSE of each split (-inf = empty split)
    out_ptr,        # bf16 [R, H, 512]
    lse_ptr,        # fp32 final lse (natural log) at (r // s_q, h, r % s_q) strides
    num_heads,
    num_splits,
    stride_pr, stride_ps, stride_ph,
    stride_qr, stride_qs,
    stride_or, stride_oh,
    stride_lb, stride_lj, stride_lh,
    s_q,
    BLOCK_HM: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One (row, BLOCK_HM heads, BLOCK_D latent dims) per program. The splits are taken BLOCK_S at
    a time in unrolled steps whose [BLOCK_HM, BLOCK_D] fp32 loads (contiguous rows) do not depend
    on each other, so with BLOCK_S >= splits all partials are in flight at once: at small batch
    the splits are many and the programs few, and walking them one at a time was a chain of L2
    round trips (many splits take narrower BLOCK_D, so more programs share the loads). Blocks of
    splits are combined with a running max."""
    pid_r = tl.program_id(0)
    r64 = pid_r.to(tl.int64)
    h = tl.program_id(1) * BLOCK_HM + tl.arange(0, BLOCK_HM)
    h_ok = h < num_heads
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    plse_row = plse_ptr + r64 * stride_qr + h
    part_row = part_ptr + r64 * stride_pr + h[:, None] * stride_ph + d[None, :]
    m = tl.full([BLOCK_HM], float("-inf"), tl.float32)
    w_sum = tl.zeros([BLOCK_HM], tl.float32)
    acc = tl.zeros([BLOCK_HM, BLOCK_D], tl.float32)
    for s0 in range(0, num_splits, BLOCK_S):
        m_new = m
        for j in tl.static_range(BLOCK_S):
            # `h * 0 +` makes the split test a [BLOCK_HM] tensor (Triton's interpreter rejects a
            # scalar bool in a mask)
            ok = h_ok & (h * 0 + s0 + j < num_splits)
            m_new = tl.maximum(m_new, tl.load(plse_row + (s0 + j) * stride_qs, mask=ok, other=float("-inf")))
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m - m_use)
        acc = acc * alpha[:, None]
        w_sum = w_sum * alpha
        for j in tl.static_range(BLOCK_S):
            ok = h_ok & (h * 0 + s0 + j < num_splits)
            w = tl.exp2(tl.load(plse_row + (s0 + j) * stride_qs, mask=ok, other=float("-inf")) - m_use)
            o = tl.load(part_row + (s0 + j) * stride_ps, mask=ok[:, None], other=0.0)
            acc += w[:, None] * o   # w = 0 for an empty or masked split
            w_sum += w
        m = m_new
    has = w_sum > 0.0
    out = acc / tl.where(has, w_sum, 1.0)[:, None]
    tl.store(out_ptr + r64 * stride_or + h[:, None] * stride_oh + d[None, :], out.to(tl.bfloat16),
             mask=h_ok[:, None])
    lse = tl.where(has, (m + tl.log2(tl.where(has, w_sum, 1.0))) * _LN2, float("inf"))
    l_off = (pid_r // s_q).to(tl.int64) * stride_lb + (pid_r % s_q) * stride_lj + h * stride_lh
    tl.store(lse_ptr + l_off, lse, mask=h_ok)


# ---------------------------------------------------------------------------------------------
# host side
# ---------------------------------------------------------------------------------------------
def _fp8_decode_mode(kv_fp8: bool, fp8_dtype: torch.dtype, arch: str) -> int:
    """FP8_DECODE constexpr: native Triton conversion where the target has the type (every AMD
    target and the interpreter for both encodings; NVIDIA for e4m3fn), integer decoding for
    e4m3fnuz on NVIDIA (Triton's fp8e4b8 is AMD-only there)."""
    if not kv_fp8:
        return _DECODE_E4M3FN
    if fp8_dtype == torch.float8_e4m3fn:
        return _DECODE_E4M3FN
    return _DECODE_E4M3FNUZ if (is_hip(arch) or arch == "cpu") else _DECODE_BITS


def _num_units(arch: str) -> int:
    p = ARCHS.get(arch)
    return p.num_cus if p is not None and p.num_cus > 0 else 0


class _Config:
    """Resolved launch config: kernel constexprs / host knobs (``meta``) and launch options."""

    def __init__(self, meta: dict, options: dict, source: str):
        self.meta, self.options, self.source = meta, options, source

    def tile(self, kv_fp8: bool) -> dict:
        """The fwd kernel's tile constexprs (launcher and compile specs alike); WIDE_LATENT applies
        to bf16 rows only (FP8 records scale each 128-dim tile separately)."""
        m = self.meta
        return {"BLOCK_H": m["BLOCK_H"], "BLOCK_K": m["BLOCK_K"], "NUM_XCDS": int(m.get("num_xcds", 1)),
                "Q_IN_LOOP": bool(m.get("Q_IN_LOOP", 0)),
                "IDX_AHEAD": bool(m.get("IDX_AHEAD", 0)), "UNCHAIN_QK": bool(m.get("UNCHAIN_QK", 0)),
                "WIDE_LATENT": bool(m.get("WIDE_LATENT", 0)) and not kv_fp8}


def _resolve(op: str, arch: str, heads: int, rows: int, kv_fp8: bool, overrides: dict | None) -> _Config:
    base = get_config(op, arch, heads=heads, rows=rows, kv_fp8=int(kv_fp8))
    meta, options = dict(base.meta), dict(base.options)
    for k, v in (overrides or {}).items():
        if k in ("num_warps", "num_stages", "waves_per_eu", "matrix_instr_nonkdim", "kpack", "maxnreg"):
            if is_hip(arch) or k not in ("waves_per_eu", "matrix_instr_nonkdim", "kpack"):
                options[k] = v
        else:
            meta[k] = v
    return _Config(meta, options, base.source + (" + overrides" if overrides else ""))


def _plan(cfg: _Config, rows: int, num_heads: int, topk: int, units: int) -> tuple[int, int]:
    block_h, block_k = cfg.meta["BLOCK_H"], cfg.meta["BLOCK_K"]
    base = rows * triton.cdiv(num_heads, block_h)
    target = int(cfg.meta.get("programs_per_unit", 2) * units)
    min_keys = max(block_k, int(cfg.meta.get("min_keys_per_split", 256)))
    max_splits = max(1, triton.cdiv(topk, min_keys))
    splits = max(1, min(max_splits, triton.cdiv(target, base)))
    keys = triton.cdiv(triton.cdiv(topk, splits), block_k) * block_k
    return triton.cdiv(topk, keys), keys


def plan_splits(rows: int, num_heads: int, topk: int, *, arch: str, kv_fp8: bool = False,
                num_units: int | None = None) -> tuple[int, int]:
    """Split-K plan of a decode call over ``rows = B * s_q`` query rows: ``(num_splits, keys_per_split)``.

    Splits the top-k list until ``rows * head_blocks * splits`` reaches ``programs_per_unit`` x
    ``num_units`` programs (config data), keeping at least ``min_keys_per_split`` keys (rounded
    up to a multiple of BLOCK_K) per split. ``num_units`` defaults to the arch's CU/SM count from
    :mod:`rocm_dsa.platform` (the launcher passes the device's real count).
    """
    cfg = _resolve("sparse_mla_decode", arch, num_heads, rows, kv_fp8, None)
    return _plan(cfg, rows, num_heads, topk, num_units or _num_units(arch) or 8)


def _merge_tile(meta: dict, splits: int) -> tuple[int, int, int]:
    """(BLOCK_HM, BLOCK_S, BLOCK_D) of the merge, powers of two. A program loads at most
    ``MERGE_ELEMS`` fp32 partial values per step (``BLOCK_HM * BLOCK_S * BLOCK_D``; at least one
    128-wide row): BLOCK_S covers every split (next power of two, at most MAX_BLOCK_S and
    MERGE_ELEMS / 128, rounded down to powers of two), BLOCK_D is the widest of 512 / 256 / 128
    latent dims that fits next to it, and the rest of the budget goes to heads (at most
    ``BLOCK_HM``, rounded down to a power of two)."""
    def floor2(x: int) -> int:
        return 1 << (max(1, int(x)).bit_length() - 1)

    elems = int(meta.get("MERGE_ELEMS", 8192))
    cap = floor2(min(int(meta.get("MAX_BLOCK_S", 64)), max(1, elems // 128)))
    block_s = min(triton.next_power_of_2(max(1, splits)), cap)
    block_d = next((w for w in (512, 256) if block_s * w <= elems), 128)
    return floor2(min(int(meta["BLOCK_HM"]), elems // (block_s * block_d))), block_s, block_d


def _check_common(q: torch.Tensor, buf: torch.Tensor, d_v: int, fp8_dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    if d_v != KV_LORA_RANK:
        raise ValueError(f"d_v: expected 512 (kv_lora_rank), got {d_v}")
    if q.dtype != torch.bfloat16 or q.shape[-1] != MLA_DIM or not q.is_contiguous():
        raise ValueError(f"q: expected contiguous bfloat16 [..., 576], got {q.dtype} {list(q.shape)}")
    rows = mla_cache_rows(buf)  # ValueError on a wrong width/dtype
    if not buf.is_contiguous():
        raise ValueError(f"buf: expected a contiguous cache buffer, got strides {list(buf.stride())}")
    kv_fp8 = rows.dtype == torch.uint8
    if kv_fp8:
        check_fp8_dtype(fp8_dtype)
    return rows, kv_fp8


def _kv_views(rows: torch.Tensor, kv_fp8: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if kv_fp8:
        return rows, rows.view(torch.float32), rows.view(torch.bfloat16)
    return rows, rows, rows


def _launch(q3: torch.Tensor, rows: torch.Tensor, kv_fp8: bool, idx2: torch.Tensor, sm_scale: float,
            fp8_dtype: torch.dtype, arch: str, op: str, s_q: int, out: torch.Tensor, lse: torch.Tensor,
            lse_strides: tuple[int, int, int], max_logits: torch.Tensor | None, num_splits: int | None,
            num_units: int | None = None, overrides: dict | None = None) -> None:
    """Run the fwd kernel (+ merge when split) over rows q3 [R, H, 576], idx2 [R, topk]."""
    r, h, _ = q3.shape
    topk = idx2.shape[1]
    if r == 0 or h == 0:
        return
    cfg = _resolve(op, arch, h, r, kv_fp8, overrides)
    block_k = cfg.meta["BLOCK_K"]
    if op == "sparse_mla_decode":
        if num_splits is None:
            splits, keys = _plan(cfg, r, h, topk, num_units or _num_units(arch) or 8)
        else:
            keys = triton.cdiv(triton.cdiv(topk, max(1, num_splits)), block_k) * block_k
            splits = triton.cdiv(topk, keys)
    else:
        splits, keys = 1, triton.cdiv(topk, block_k) * block_k
    kv, kv_word, kv_half = _kv_views(rows, kv_fp8)
    common = dict(KV_FP8=kv_fp8, FP8_DECODE=_fp8_decode_mode(kv_fp8, fp8_dtype, arch),
                  SPLIT_K=splits > 1, UPCAST=interpreting(),
                  **cfg.tile(kv_fp8), **cfg.options)
    grid = (r * triton.cdiv(h, cfg.meta["BLOCK_H"]), splits)
    scale2 = float(sm_scale) * _LOG2E
    if splits == 1:
        maxl = max_logits if max_logits is not None else torch.empty(r, h, dtype=torch.float32, device=q3.device)
        _fwd_sparse_mla_kernel[grid](
            q3, kv, kv_word, kv_half, idx2, out, lse, maxl,
            rows.shape[0], topk, h, keys, scale2,
            q3.stride(0), q3.stride(1), idx2.stride(0),
            out.stride(0), 0, out.stride(1),
            *lse_strides, 0,
            maxl.stride(0), s_q, **common)
        return
    part = torch.empty(r, splits, h, KV_LORA_RANK, dtype=torch.float32, device=q3.device)
    plse = torch.empty(r, splits, h, dtype=torch.float32, device=q3.device)
    _fwd_sparse_mla_kernel[grid](
        q3, kv, kv_word, kv_half, idx2, part, plse, plse,
        rows.shape[0], topk, h, keys, scale2,
        q3.stride(0), q3.stride(1), idx2.stride(0),
        part.stride(0), part.stride(1), part.stride(2),
        plse.stride(0), 0, plse.stride(2), plse.stride(1),
        0, s_q, **common)
    mcfg = get_config("sparse_mla_merge", arch, heads=h, rows=r)
    bhm, block_s, block_d = _merge_tile(mcfg.meta, splits)
    _merge_sparse_mla_kernel[(r, triton.cdiv(h, bhm), KV_LORA_RANK // block_d)](
        part, plse, out, lse, h, splits,
        part.stride(0), part.stride(1), part.stride(2),
        plse.stride(0), plse.stride(1),
        out.stride(0), out.stride(1),
        *lse_strides, s_q,
        BLOCK_HM=bhm, BLOCK_S=block_s, BLOCK_D=block_d, **mcfg.options)


def sparse_mla_prefill(q: torch.Tensor, buf: torch.Tensor, indices: torch.Tensor, sm_scale: float, d_v: int,
                       fp8_dtype: torch.dtype, *, arch: str, config: dict | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse MLA prefill over gathered latent rows.

    Args:
        q: [T, H, 576] bfloat16 contiguous (absorbed q_nope | q_rope), any H >= 1.
        buf: latent rows: bf16 [..., 576] or uint8 [..., 656] FP8 records ([N, 1, W],
            [N, W] or [num_pages, page_size, 1, W]); row n = flat slot n.
        indices: [T, 1, topk] int32 row numbers; < 0 or >= N is invalid anywhere in the row;
            duplicates count once per occurrence.
        sm_scale: softmax scale applied to q.k (DeepSeek-V3.2: 0.1352338).
        d_v: 512.
        fp8_dtype: e4m3fn / e4m3fnuz encoding of FP8 records (unused for bf16 rows).
        arch: platform arch ("gfx942", "gfx950", "sm90", "cpu", ...) selecting the config.
        config: overrides of the resolved config (``BLOCK_H``, ``BLOCK_K``, ``num_warps`` ...),
            for tuning scripts; None in normal use.
    Returns:
        (out [T, H, 512] bfloat16, max_logits [T, H] float32 (max scaled score, -inf for an
        empty row), lse [T, H] float32 natural-log sum-exp of scaled scores (+inf for an empty
        row)).
    Raises:
        ValueError: wrong shapes / dtypes / d_v; TypeError: bad ``fp8_dtype`` for FP8 records.
    Semantics: FlashMLA ``flash_mla_sparse_fwd`` (``ref_sparse_attn_fwd``).
    """
    rows, kv_fp8 = _check_common(q, buf, d_v, fp8_dtype)
    if q.dim() != 3 or indices.dim() != 3 or indices.shape[:2] != (q.shape[0], 1) \
            or indices.dtype != torch.int32 or not indices.is_contiguous():
        raise ValueError(f"indices: expected contiguous int32 [{q.shape[0]}, 1, topk], got "
                         f"{indices.dtype} {list(indices.shape)}")
    t, h, _ = q.shape
    out = torch.empty(t, h, KV_LORA_RANK, dtype=torch.bfloat16, device=q.device)
    max_logits = torch.empty(t, h, dtype=torch.float32, device=q.device)
    lse = torch.empty(t, h, dtype=torch.float32, device=q.device)
    if indices.shape[2] == 0:
        out.zero_(), max_logits.fill_(float("-inf")), lse.fill_(float("inf"))
        return out, max_logits, lse
    _launch(q, rows, kv_fp8, indices.view(t, -1), sm_scale, fp8_dtype, arch, "sparse_mla_prefill", 1,
            out, lse, (lse.stride(0), 0, lse.stride(1)), max_logits, None, overrides=config)
    return out, max_logits, lse


def sparse_mla_decode(q: torch.Tensor, buf: torch.Tensor, indices: torch.Tensor, sm_scale: float, d_v: int,
                      fp8_dtype: torch.dtype, *, arch: str, num_splits: int | None = None,
                      config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse MLA decode over the paged latent cache (split-K over the top-k list + LSE merge).

    Args:
        q: [B, s_q, H, 576] bfloat16 contiguous; s_q >= 1 (MTP verification), any H >= 1
            (16/32/64/128 natively: heads are masked, never padded into the math).
        buf: paged latent cache [num_pages, page_size, 1, 576] bf16 or [..., 656] uint8 FP8.
        indices: [B, s_q, topk] int32 physical slots (page * page_size + offset); < 0 or
            >= num_pages * page_size is invalid.
        sm_scale, d_v, fp8_dtype, arch: as :func:`sparse_mla_prefill`.
        num_splits: split-K count override (default: :func:`plan_splits` from the config).
        config: overrides of the resolved config, for tuning scripts; None in normal use.
    Returns:
        (out [B, s_q, H, 512] bfloat16, lse [B, H, s_q] float32 natural log; +inf and out = 0
        for a query without a valid slot).
    Raises:
        ValueError / TypeError as :func:`sparse_mla_prefill`.
    Semantics: FlashMLA ``flash_mla_with_kvcache(..., indices=...)`` sparse decode.
    """
    rows, kv_fp8 = _check_common(q, buf, d_v, fp8_dtype)
    if q.dim() != 4 or indices.dim() != 3 or indices.shape[:2] != q.shape[:2] \
            or indices.dtype != torch.int32 or not indices.is_contiguous():
        raise ValueError(f"indices: expected contiguous int32 [{q.shape[0]}, {q.shape[1]}, topk], got "
                         f"{indices.dtype} {list(indices.shape)}")
    b, s_q, h, _ = q.shape
    out = torch.empty(b, s_q, h, KV_LORA_RANK, dtype=torch.bfloat16, device=q.device)
    lse = torch.empty(b, h, s_q, dtype=torch.float32, device=q.device)
    if indices.shape[2] == 0:
        out.zero_(), lse.fill_(float("inf"))
        return out, lse
    units = None
    if q.is_cuda:
        units = torch.cuda.get_device_properties(q.device).multi_processor_count
    _launch(q.view(b * s_q, h, MLA_DIM), rows, kv_fp8, indices.view(b * s_q, -1), sm_scale, fp8_dtype, arch,
            "sparse_mla_decode", s_q, out.view(b * s_q, h, KV_LORA_RANK), lse,
            (lse.stride(0), lse.stride(2), lse.stride(1)), None, num_splits, units, config)
    return out, lse


# ---------------------------------------------------------------------------------------------
# ahead-of-time compile specs (rocm-dsa compile)
# ---------------------------------------------------------------------------------------------
def compile_specs(arch: str) -> list:
    """:class:`rocm_dsa.compile.CompileSpec` rows for ``rocm-dsa compile --arch <arch>``: the fwd
    kernel for prefill (one split) and decode (split-K partials) at H = 16/32/64/128 over bf16
    and FP8 (the arch's native encoding) caches, and the merge kernel; the cache tensors are
    marked > 2 GiB (64-bit addressing)."""
    from rocm_dsa.compile import CompileSpec

    fnuz = arch == "gfx942"
    fp8_mode = _fp8_decode_mode(True, torch.float8_e4m3fnuz if fnuz else torch.float8_e4m3fn, arch)
    specs = []
    for op, splits, rows in (("sparse_mla_prefill", 1, 4096), ("sparse_mla_decode", 2, 64)):
        for h in (16, 32, 64, 128):
            for kv_fp8 in (False, True):
                cfg = _resolve(op, arch, h, rows, kv_fp8, None)
                sig = {"q_ptr": "*bf16", "kv_ptr": "*u8" if kv_fp8 else "*bf16",
                       "kv_word_ptr": "*fp32" if kv_fp8 else "*bf16",
                       "kv_half_ptr": "*bf16", "idx_ptr": "*i32",
                       "out_ptr": "*bf16" if splits == 1 else "*fp32", "lse_ptr": "*fp32", "maxl_ptr": "*fp32",
                       "n_rows": "i32", "topk": "i32", "num_heads": "i32", "keys_per_split": "i32",
                       "sm_scale_log2": "fp32"}
                strides = ["stride_qr", "stride_qh", "stride_ir", "stride_or", "stride_os", "stride_oh",
                           "stride_lb", "stride_lj", "stride_lh", "stride_ls", "stride_mr"]
                sig.update({s: "i32" for s in strides})
                sig["s_q"] = "i32"
                specs.append(CompileSpec(
                    name=f"{op} H={h} {'fp8' if kv_fp8 else 'bf16'} BLOCK_H={cfg.meta['BLOCK_H']} BLOCK_K={cfg.meta['BLOCK_K']}",
                    fn=_fwd_sparse_mla_kernel,
                    signature=sig,
                    constexprs={"KV_FP8": kv_fp8, "FP8_DECODE": fp8_mode if kv_fp8 else 1,
                                "SPLIT_K": splits > 1, "UPCAST": False,
                                **cfg.tile(kv_fp8)},
                    num_warps=cfg.options.get("num_warps", 4), num_stages=cfg.options.get("num_stages", 1),
                    waves_per_eu=cfg.options.get("waves_per_eu", 0),
                    matrix_instr_nonkdim=cfg.options.get("matrix_instr_nonkdim", 0),
                    kpack=cfg.options.get("kpack", 1),
                    aligned=("stride_qr", "stride_qh", "stride_or", "stride_oh", "stride_os"),
                    large_tensors=("kv_ptr", "kv_word_ptr", "kv_half_ptr"),
                    requires_mfma=True,
                    note=cfg.source))
    mcfg = get_config("sparse_mla_merge", arch, heads=128, rows=64)
    # every tile the split plans reach: a few splits per row (B >= 64) up to many (B = 1)
    for bhm, block_s, block_d in sorted({_merge_tile(mcfg.meta, s) for s in (2, 4, 8, 32)}, reverse=True):
        specs.append(CompileSpec(
            name=f"sparse_mla_merge BLOCK_HM={bhm} BLOCK_S={block_s} BLOCK_D={block_d}",
            fn=_merge_sparse_mla_kernel,
            signature={"part_ptr": "*fp32", "plse_ptr": "*fp32", "out_ptr": "*bf16", "lse_ptr": "*fp32",
                       "num_heads": "i32", "num_splits": "i32",
                       **{s: "i32" for s in ("stride_pr", "stride_ps", "stride_ph", "stride_qr", "stride_qs",
                                             "stride_or", "stride_oh", "stride_lb", "stride_lj", "stride_lh", "s_q")}},
            constexprs={"BLOCK_HM": bhm, "BLOCK_S": block_s, "BLOCK_D": block_d},
            num_warps=mcfg.options.get("num_warps", 4), num_stages=mcfg.options.get("num_stages", 1),
            waves_per_eu=mcfg.options.get("waves_per_eu", 0),
            aligned=("stride_pr", "stride_ps", "stride_ph", "stride_or", "stride_oh"),
            note=mcfg.source))
    return specs
