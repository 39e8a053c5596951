"""The public op interface of rocm-dsa: signatures, contracts, validation and one dispatch each.

Notation: T query tokens, H heads local to the TP rank, N keys / KV slots, B requests,
D = 128 (indexer head dim), 576 = kv_lora_rank 512 + rope 64 (absorbed MLA), k = top-k width.
Integer index tensors are int32 unless stated. FP8 means torch.float8_e4m3fn (OCP; NVIDIA,
gfx950) or torch.float8_e4m3fnuz (gfx942). Every op takes a keyword-only ``provider``:
None = environment (``ROCM_DSA_BACKEND[_<OP>]``) then the platform's automatic choice; a name
("reference", "triton", ...) forces that provider (see :mod:`rocm_dsa.backends`).

Validation reads metadata only (no host sync). Values are not checked: out-of-range indices are
defined as invalid by the contracts, so providers mask them instead of faulting.

Semantics sources: DeepSeek-V3.2 ``inference/model.py`` (Indexer, MLA; post Nov-2025 fix),
DeepGEMM ``fp8_mqa_logits`` / ``fp8_paged_mqa_logits`` test references, FlashMLA
``flash_mla_sparse_fwd`` / ``flash_mla_with_kvcache`` (sparse) test references.
"""

from __future__ import annotations

import torch

from ._checks import INDEX_DTYPES, check_positive, check_scale, check_tensor
from .backends import make_case, select
from .cache import MLA_DIM, MLA_FP8_RECORD_BYTES, IndexerKCache, MLAKVCache
from .fp8 import FP8_DTYPES, check_fp8_dtype, quantize_fp8
from .platform import detect

__all__ = [
    "indexer_logits",
    "indexer_logits_paged",
    "topk_indices",
    "indexer_topk",
    "indexer_topk_paged",
    "sparse_mla_prefill",
    "sparse_mla_decode",
    "store_indexer_k",
    "store_mla_kv",
    "quantize_fp8",
]

_I32 = torch.int32


# ---------------------------------------------------------------------------------------------
# shared argument handling
# ---------------------------------------------------------------------------------------------
def _indexer_buffer(kv_cache: IndexerKCache | torch.Tensor, device: torch.device) -> torch.Tensor:
    buf = kv_cache.buffer if isinstance(kv_cache, IndexerKCache) else kv_cache
    check_tensor("kv_cache", buf, dtype=torch.uint8, shape=(None, None), device=device, contiguous=True)
    if buf.shape[1] % 132:
        raise ValueError(f"kv_cache: expected uint8 [num_pages, page_size*132], got {list(buf.shape)}")
    return buf


def _mla_buffer(kv_cache: MLAKVCache | torch.Tensor, fp8_dtype: torch.dtype | None,
                device: torch.device) -> tuple[torch.Tensor, torch.dtype]:
    if isinstance(kv_cache, MLAKVCache):
        if fp8_dtype is not None and kv_cache.kv_dtype == "fp8" and fp8_dtype != kv_cache.fp8_dtype:
            raise TypeError(f"fp8_dtype: the kv cache holds {kv_cache.fp8_dtype} records, got {fp8_dtype}")
        buf, fp8_dtype = kv_cache.buffer, kv_cache.fp8_dtype if fp8_dtype is None else fp8_dtype
    else:
        buf = kv_cache
    check_tensor("kv_cache", buf, dtype=(torch.bfloat16, torch.uint8), device=device, contiguous=True)
    width = MLA_DIM if buf.dtype == torch.bfloat16 else MLA_FP8_RECORD_BYTES
    # [N, W], [N, 1, W] or [num_pages, page_size, 1, W]
    if buf.dim() not in (2, 3, 4) or buf.shape[-1] != width or (buf.dim() == 3 and buf.shape[1] != 1) \
            or (buf.dim() == 4 and buf.shape[2] != 1):
        raise ValueError(
            f"kv_cache: expected {buf.dtype} [num_pages, page_size, 1, {width}] or [N, 1, {width}], "
            f"got {list(buf.shape)}"
        )
    if fp8_dtype is None:
        fp8_dtype = detect(device).fp8_dtype
    return buf, check_fp8_dtype(fp8_dtype)


def _check_k(k: int) -> int:
    check_positive("k", k)
    if k > 2048 * 8:
        raise ValueError(f"k: expected <= 16384, got {k}")
    return k


def _check_topk_width(indices: torch.Tensor) -> None:
    if indices.shape[-1] < 1:
        raise ValueError(f"indices: expected at least one index per row (topk >= 1), got shape {list(indices.shape)}")


def _check_fp8_operands(q_fp8: torch.Tensor, name: str = "q_fp8") -> torch.dtype:
    check_tensor(name, q_fp8)
    if q_fp8.dtype not in FP8_DTYPES:
        raise TypeError(f"{name}: expected torch.float8_e4m3fn or torch.float8_e4m3fnuz, got {q_fp8.dtype}")
    return q_fp8.dtype


# ---------------------------------------------------------------------------------------------
# 1. indexer logits, ragged
# ---------------------------------------------------------------------------------------------
def _check_ragged_indexer(q_fp8, k_fp8, k_scale, weights, ks, ke):
    dims: dict[str, int] = {}
    fp8 = _check_fp8_operands(q_fp8)
    dev = q_fp8.device
    check_tensor("q_fp8", q_fp8, shape=("T", "H", "D"), contiguous=True, dims=dims)
    check_tensor("k_fp8", k_fp8, dtype=fp8, shape=("N", "D"), device=dev, contiguous=True, dims=dims)
    check_tensor("k_scale", k_scale, dtype=torch.float32, shape=("N",), device=dev, contiguous=True, dims=dims)
    check_tensor("weights", weights, dtype=torch.float32, shape=("T", "H"), device=dev, contiguous=True, dims=dims)
    check_tensor("ks", ks, dtype=_I32, shape=("T",), device=dev, contiguous=True, dims=dims)
    check_tensor("ke", ke, dtype=_I32, shape=("T",), device=dev, contiguous=True, dims=dims)
    return fp8, dims


def indexer_logits(
    q_fp8: torch.Tensor,
    k_fp8: torch.Tensor,
    k_scale: torch.Tensor,
    weights: torch.Tensor,
    ks: torch.Tensor,
    ke: torch.Tensor,
    *,
    provider: str | None = None,
) -> torch.Tensor:
    """Lightning-indexer logits over a ragged key buffer (prefill).

    Args:
        q_fp8: [T, H, D] FP8 (H = 64 indexer heads for V3.2, D = 128), Hadamard-rotated queries.
        k_fp8: [N, D] FP8, same dtype as ``q_fp8``: the shared key of each position.
        k_scale: [N] float32 dequantization scale of each key.
        weights: [T, H] float32 head weights, already holding q_scale * H^-0.5 * D^-0.5.
        ks, ke: [T] int32: query t scores keys ks[t] <= s < ke[t] (0 <= ks <= ke <= N).
    Returns:
        logits [T, N] float32: ``k_scale[s] * sum_h weights[t, h] * relu(q[t, h] . k[s])`` inside
        the window, -inf outside.
    Raises:
        TypeError: wrong dtypes (FP8 operands differ, weights not f32, index not int32).
        ValueError: shape or device mismatch, non-contiguous operands.
        ProviderError: no provider can run the case.
    Semantics: DeepSeek-V3.2 ``fp8_index`` (inference/kernel.py) == DeepGEMM ``fp8_mqa_logits``
    with ``clean_logits=True``.
    """
    fp8, dims = _check_ragged_indexer(q_fp8, k_fp8, k_scale, weights, ks, ke)
    dev = q_fp8.device
    case = make_case("indexer_logits", dev, heads=dims["H"], dtypes={"q_fp8": fp8}, head_dim=dims["D"])
    return select(case, provider).indexer_logits(q_fp8, k_fp8, k_scale, weights, ks, ke)


# ---------------------------------------------------------------------------------------------
# 2. indexer logits, paged
# ---------------------------------------------------------------------------------------------
def _check_paged_indexer(q_fp8, kv_cache, weights, context_lens, block_table):
    dims: dict[str, int] = {}
    fp8 = _check_fp8_operands(q_fp8)
    dev = q_fp8.device
    check_tensor("q_fp8", q_fp8, shape=("B", "next_n", "H", 128), contiguous=True, dims=dims)
    if isinstance(kv_cache, IndexerKCache) and kv_cache.fp8_dtype != fp8:
        raise TypeError(f"kv_cache: holds {kv_cache.fp8_dtype} keys, but q_fp8 is {fp8}")
    buf = _indexer_buffer(kv_cache, dev)
    check_tensor("weights", weights, dtype=torch.float32, shape=(dims["B"] * dims["next_n"], dims["H"]),
                 device=dev, contiguous=True)
    check_tensor("context_lens", context_lens, dtype=_I32, shape=("B",), device=dev, contiguous=True, dims=dims)
    check_tensor("block_table", block_table, dtype=_I32, shape=("B", None), device=dev, dims=dims)
    return buf, fp8, dims


def indexer_logits_paged(
    q_fp8: torch.Tensor,
    kv_cache: IndexerKCache | torch.Tensor,
    weights: torch.Tensor,
    context_lens: torch.Tensor,
    block_table: torch.Tensor,
    *,
    provider: str | None = None,
) -> torch.Tensor:
    """Lightning-indexer logits over the paged key cache (decode and MTP verification).

    Args:
        q_fp8: [B, next_n, H, 128] FP8 queries (next_n >= 1 tokens per request).
        kv_cache: :class:`IndexerKCache` or its buffer [num_pages, page_size*132] uint8, keys in
            the same FP8 dtype as ``q_fp8`` (checked for a cache object: TypeError).
        weights: [B*next_n, H] float32 head weights (q_scale * H^-0.5 * D^-0.5 folded in).
        context_lens: [B] int32 tokens of each request in the cache, the next_n new ones included.
        block_table: [B, max_pages] int32 physical page of each logical page; an entry outside
            [0, num_pages) marks its keys absent (-inf, never read).
    Returns:
        logits [B*next_n, max_pages*page_size] float32. Row r = b*next_n + j sees keys
        0 ... context_lens[b] - next_n + j (inclusive); -inf beyond.
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices; ProviderError.
    Semantics: DeepGEMM ``fp8_paged_mqa_logits`` test reference (causal MTP mask) with -inf
    outside the visible keys.
    """
    buf, fp8, dims = _check_paged_indexer(q_fp8, kv_cache, weights, context_lens, block_table)
    case = make_case("indexer_logits_paged", q_fp8.device, heads=dims["H"], dtypes={"q_fp8": fp8},
                     next_n=dims["next_n"], page_size=buf.shape[1] // 132)
    return select(case, provider).indexer_logits_paged(q_fp8, buf, weights, context_lens, block_table)


# ---------------------------------------------------------------------------------------------
# 3. top-k
# ---------------------------------------------------------------------------------------------
def topk_indices(
    logits: torch.Tensor,
    starts: torch.Tensor,
    ends: torch.Tensor,
    *,
    k: int = 2048,
    provider: str | None = None,
) -> torch.Tensor:
    """Exact per-row top-k inside a column window.

    Args:
        logits: [R, C] float32.
        starts, ends: [R] int32 window [starts[r], ends[r]) of each row, 0 <= starts <= ends <= C
            (values are not checked on the host: ends past C are clamped to C).
        k: output width (DeepSeek-V3.2: 2048).
    Returns:
        [R, k] int32 positions relative to the window start (column - starts[r]). The valid
        prefix is exactly the set of the k largest candidates; a row with <= k candidates gives
        all of them; the tail is -1 and the prefix never holds -1. A candidate is a column in
        the window whose logit is not NaN and not -inf (+inf ranks above every finite value).
        Ties break toward the lower column, so results are deterministic and identical on every
        TP rank. Order inside the prefix is provider-defined but deterministic (the reference:
        descending value, then ascending column; hip and triton: ascending column); sparse MLA
        does not depend on it.
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices or k; ProviderError.
    Semantics: DeepSeek-V3.2 ``index_score.topk(min(index_topk, end_pos))`` with the mask, and
    SGLang's ``fast_topk_transform`` (-1 padding).
    """
    dims: dict[str, int] = {}
    check_tensor("logits", logits, dtype=torch.float32, shape=("R", "C"), contiguous=True, dims=dims)
    dev = logits.device
    check_tensor("starts", starts, dtype=_I32, shape=("R",), device=dev, contiguous=True, dims=dims)
    check_tensor("ends", ends, dtype=_I32, shape=("R",), device=dev, contiguous=True, dims=dims)
    _check_k(k)
    case = make_case("topk_indices", dev, k=k, columns=dims["C"])
    return select(case, provider).topk_indices(logits, starts, ends, k)


# ---------------------------------------------------------------------------------------------
# 4. fused indexer + top-k
# ---------------------------------------------------------------------------------------------
def indexer_topk(
    q_fp8: torch.Tensor,
    k_fp8: torch.Tensor,
    k_scale: torch.Tensor,
    weights: torch.Tensor,
    ks: torch.Tensor,
    ke: torch.Tensor,
    *,
    k: int = 2048,
    provider: str | None = None,
) -> torch.Tensor:
    """Fused ragged indexer + top-k: ``topk_indices(indexer_logits(...), ks, ke, k=k)``.

    Arguments as :func:`indexer_logits`. Returns [T, k] int32 positions relative to ks[t]
    (request-local), -1 padded, same set and tie rule as :func:`topk_indices`. Fast providers
    never materialize the [T, N] logits (extra memory O(T*k)); the reference does, in chunks.
    Raises as :func:`indexer_logits`.
    """
    fp8, dims = _check_ragged_indexer(q_fp8, k_fp8, k_scale, weights, ks, ke)
    dev = q_fp8.device
    _check_k(k)
    case = make_case("indexer_topk", dev, heads=dims["H"], dtypes={"q_fp8": fp8}, k=k, head_dim=dims["D"])
    return select(case, provider).indexer_topk(q_fp8, k_fp8, k_scale, weights, ks, ke, k)


def indexer_topk_paged(
    q_fp8: torch.Tensor,
    kv_cache: IndexerKCache | torch.Tensor,
    weights: torch.Tensor,
    context_lens: torch.Tensor,
    block_table: torch.Tensor,
    *,
    k: int = 2048,
    return_slots: bool = False,
    provider: str | None = None,
) -> torch.Tensor:
    """Fused paged indexer + top-k (decode / MTP).

    Arguments as :func:`indexer_logits_paged`. Returns [B*next_n, k] int32: request-local token
    positions (``return_slots=False``) or physical KV slots ``block_table[b, pos // page_size] *
    page_size + pos % page_size`` (``return_slots=True``, for :func:`sparse_mla_decode` over a
    latent cache sharing the page table); -1 padded. Same set and tie rule as
    :func:`topk_indices`. Raises as :func:`indexer_logits_paged`.
    """
    buf, fp8, dims = _check_paged_indexer(q_fp8, kv_cache, weights, context_lens, block_table)
    _check_k(k)
    case = make_case("indexer_topk_paged", q_fp8.device, heads=dims["H"], dtypes={"q_fp8": fp8},
                     next_n=dims["next_n"], page_size=buf.shape[1] // 132, k=k)
    return select(case, provider).indexer_topk_paged(q_fp8, buf, weights, context_lens, block_table, k,
                                                     bool(return_slots))


# ---------------------------------------------------------------------------------------------
# 5./6. sparse MLA
# ---------------------------------------------------------------------------------------------
def sparse_mla_prefill(
    q: torch.Tensor,
    kv: MLAKVCache | torch.Tensor,
    indices: torch.Tensor,
    *,
    sm_scale: float,
    d_v: int = 512,
    fp8_dtype: torch.dtype | None = None,
    provider: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse MLA over selected latent rows (prefill; absorbed 576/512 form, one KV head).

    Args:
        q: [T, H, 576] bfloat16 (q_nope absorbed into the latent space | q_rope).
        kv: [N, 1, 576] bfloat16 rows, or an :class:`MLAKVCache` / its buffer (bf16 pages, or
            656-byte FP8 records [..., 656] uint8): rows are the flattened slots.
        indices: [T, 1, topk] int32 rows of ``kv`` each query attends to (topk >= 1); -1 or >= N
            is invalid, anywhere in the row. Duplicates count once per occurrence.
        sm_scale: softmax scale applied to q.k (DeepSeek-V3.2: 0.1352338; FlashMLA's default
            576^-0.5 is wrong for this model, so there is no default).
        d_v: value width, the first d_v dims of each row (512).
        fp8_dtype: encoding of FP8 records when ``kv`` is a raw uint8 buffer (default: the
            device's native FP8, e4m3fnuz on gfx942). An :class:`MLAKVCache` brings its own; a
            different explicit value raises TypeError.
    Returns:
        out [T, H, d_v] bfloat16, max_logits [T, H] float32 (max of scaled scores),
        lse [T, H] float32 natural-log sum-exp of scaled scores. A row with no valid index:
        out = 0, lse = +inf, max_logits = -inf; never NaN.
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices, sm_scale, d_v; ProviderError.
    Semantics: FlashMLA ``flash_mla_sparse_fwd`` test reference (``ref_sparse_attn_fwd``).
    """
    dims: dict[str, int] = {}
    check_tensor("q", q, dtype=torch.bfloat16, shape=("T", "H", MLA_DIM), contiguous=True, dims=dims)
    dev = q.device
    buf, fp8 = _mla_buffer(kv, fp8_dtype, dev)
    check_tensor("indices", indices, dtype=_I32, shape=(dims["T"], 1, None), device=dev, contiguous=True)
    _check_topk_width(indices)
    check_scale("sm_scale", sm_scale)
    if d_v != 512:
        raise ValueError(f"d_v: expected 512 (kv_lora_rank), got {d_v}")
    kv_fmt = "bf16" if buf.dtype == torch.bfloat16 else "fp8"
    case = make_case("sparse_mla_prefill", dev, heads=dims["H"], dtypes={"q": q.dtype}, kv_format=kv_fmt,
                     topk=indices.shape[-1])
    if q.numel() == 0:  # empty batch: nothing to launch
        t, h = dims["T"], dims["H"]
        return (q.new_empty(t, h, d_v), torch.empty(t, h, dtype=torch.float32, device=dev),
                torch.empty(t, h, dtype=torch.float32, device=dev))
    return select(case, provider).sparse_mla_prefill(q, buf, indices, float(sm_scale), d_v, fp8)


def sparse_mla_decode(
    q: torch.Tensor,
    kv_cache: MLAKVCache | torch.Tensor,
    indices: torch.Tensor,
    *,
    sm_scale: float,
    d_v: int = 512,
    fp8_dtype: torch.dtype | None = None,
    provider: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse MLA decode over the paged latent cache (s_q > 1 = MTP verification).

    Args:
        q: [B, s_q, H, 576] bfloat16, H in {16, 32, 64, 128} (TP 8/4/2/1) or any other count.
        kv_cache: :class:`MLAKVCache` or its buffer: [num_pages, page_size, 1, 576] bfloat16 or
            [num_pages, page_size, 1, 656] uint8 FP8 records.
        indices: [B, s_q, topk] int32 physical slots (page * page_size + offset), topk >= 1; -1
            or any slot >= num_pages * page_size is invalid.
        sm_scale, d_v, fp8_dtype: as :func:`sparse_mla_prefill`.
    Returns:
        out [B, s_q, H, d_v] bfloat16, lse [B, H, s_q] float32 (natural log). A query with no
        valid slot: out = 0, lse = +inf; never NaN.
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices; ProviderError.
    Semantics: FlashMLA ``flash_mla_with_kvcache(..., indices=...)`` sparse decode reference
    (lse transposed to [B, H, s_q] as FlashMLA returns it).
    """
    dims: dict[str, int] = {}
    check_tensor("q", q, dtype=torch.bfloat16, shape=("B", "s_q", "H", MLA_DIM), contiguous=True, dims=dims)
    dev = q.device
    buf, fp8 = _mla_buffer(kv_cache, fp8_dtype, dev)
    check_tensor("indices", indices, dtype=_I32, shape=(dims["B"], dims["s_q"], None), device=dev,
                 contiguous=True)
    _check_topk_width(indices)
    check_scale("sm_scale", sm_scale)
    if d_v != 512:
        raise ValueError(f"d_v: expected 512 (kv_lora_rank), got {d_v}")
    kv_fmt = "bf16" if buf.dtype == torch.bfloat16 else "fp8"
    case = make_case("sparse_mla_decode", dev, heads=dims["H"], dtypes={"q": q.dtype}, kv_format=kv_fmt,
                     s_q=dims["s_q"], topk=indices.shape[-1])
    if q.numel() == 0:  # empty batch: nothing to launch
        b, s_q, h = dims["B"], dims["s_q"], dims["H"]
        return q.new_empty(b, s_q, h, d_v), torch.empty(b, h, s_q, dtype=torch.float32, device=dev)
    return select(case, provider).sparse_mla_decode(q, buf, indices, float(sm_scale), d_v, fp8)


# ---------------------------------------------------------------------------------------------
# 7. cache writes
# ---------------------------------------------------------------------------------------------
def _check_slot_mapping(slot_mapping: torch.Tensor, n: int, dev: torch.device) -> None:
    check_tensor("slot_mapping", slot_mapping, dtype=INDEX_DTYPES, shape=(n,), device=dev, contiguous=True)


def store_indexer_k(
    k: torch.Tensor,
    kv_cache: IndexerKCache | torch.Tensor,
    slot_mapping: torch.Tensor,
    *,
    fp8_dtype: torch.dtype | None = None,
    scale_fmt: str | None = "ue8m0",
    provider: str | None = None,
) -> None:
    """Quantize indexer keys (one scale per token) and store them in the paged key cache.

    Args:
        k: [N, 128] bfloat16/float16/float32 keys after LayerNorm, RoPE and Hadamard.
        kv_cache: :class:`IndexerKCache` or its buffer [num_pages, page_size*132] uint8.
        slot_mapping: [N] int64 (or int32) slots; a slot < 0 (padding) or past the cache's
            last slot is skipped: nothing is written for it, never out of bounds.
        fp8_dtype: FP8 encoding (default: the cache's, else the device's native FP8); must
            equal the cache's when ``kv_cache`` is an :class:`IndexerKCache` (else TypeError).
        scale_fmt: "ue8m0" (power-of-two scales, DeepSeek-V3.2) or None (fp32 amax/max).
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices; ProviderError.
    Semantics: DeepSeek-V3.2 Indexer ``act_quant(k, 128, scale_fmt)`` + SGLang's
    ``set_index_k_scale_buffer`` page layout (values region, then scales region).
    """
    check_tensor("k", k, dtype=(torch.bfloat16, torch.float16, torch.float32), shape=(None, 128), contiguous=True)
    dev = k.device
    buf = _indexer_buffer(kv_cache, dev)
    _check_slot_mapping(slot_mapping, k.shape[0], dev)
    if isinstance(kv_cache, IndexerKCache) and fp8_dtype is not None and fp8_dtype != kv_cache.fp8_dtype:
        raise TypeError(f"fp8_dtype: the kv cache holds {kv_cache.fp8_dtype} keys, got {fp8_dtype}")
    if fp8_dtype is None:
        fp8_dtype = kv_cache.fp8_dtype if isinstance(kv_cache, IndexerKCache) else detect(dev).fp8_dtype
    check_fp8_dtype(fp8_dtype)
    if scale_fmt not in (None, "ue8m0"):
        raise ValueError(f"scale_fmt: expected None or 'ue8m0', got {scale_fmt!r}")
    case = make_case("store_indexer_k", dev, dtypes={"k": k.dtype, "fp8": fp8_dtype})
    select(case, provider).store_indexer_k(k, buf, slot_mapping, fp8_dtype, scale_fmt)


def store_mla_kv(
    c_kv: torch.Tensor,
    k_rope: torch.Tensor,
    kv_cache: MLAKVCache | torch.Tensor,
    slot_mapping: torch.Tensor,
    *,
    fp8_dtype: torch.dtype | None = None,
    provider: str | None = None,
) -> None:
    """Store MLA latents in the paged latent cache (bf16 rows or 656-byte FP8 records).

    Args:
        c_kv: [N, 512] bfloat16/float32 normalized latent (after kv_a_layernorm).
        k_rope: [N, 64] bfloat16/float32 rope key (interleaved RoPE applied).
        kv_cache: :class:`MLAKVCache` or its buffer ([..., 576] bf16 or [..., 656] uint8).
        slot_mapping: [N] int64 (or int32) slots; a slot < 0 (padding) or past the cache's
            last slot is skipped: nothing is written for it, never out of bounds.
        fp8_dtype: encoding of FP8 records (default: the cache's, else the device's native FP8);
            must equal an FP8 :class:`MLAKVCache`'s own (else TypeError).
    Raises:
        TypeError / ValueError for bad dtypes, shapes, devices; ProviderError.
    Semantics: SGLang ``set_mla_kv_buffer``; FP8 record as FlashMLA's sparse FP8 KV format
    (tile-128 scales, rope kept in bf16).
    """
    fdt = (torch.bfloat16, torch.float16, torch.float32)
    check_tensor("c_kv", c_kv, dtype=fdt, shape=(None, 512), contiguous=True)
    dev = c_kv.device
    check_tensor("k_rope", k_rope, dtype=fdt, shape=(c_kv.shape[0], 64), device=dev, contiguous=True)
    buf, fp8 = _mla_buffer(kv_cache, fp8_dtype, dev)
    _check_slot_mapping(slot_mapping, c_kv.shape[0], dev)
    kv_fmt = "bf16" if buf.dtype == torch.bfloat16 else "fp8"
    case = make_case("store_mla_kv", dev, dtypes={"c_kv": c_kv.dtype}, kv_format=kv_fmt)
    select(case, provider).store_mla_kv(c_kv, k_rope, buf, slot_mapping, fp8)
