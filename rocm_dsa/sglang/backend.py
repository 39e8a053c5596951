"""The ``nsa-rocm`` attention backend: SGLang's DSA backend with rocm-dsa kernels.

:class:`RocmDSABackend` subclasses SGLang 0.5.23's ``DeepseekSparseAttnBackend``
(``sglang/srt/layers/attention/dsa_backend.py``) and keeps all of its batch metadata, CUDA/HIP
graph and MTP machinery. What changes:

* sparse MLA (prefill, MTP verify, draft extend, decode) runs :func:`rocm_dsa.ops.sparse_mla_prefill`
  / :func:`rocm_dsa.ops.sparse_mla_decode` over SGLang's latent cache (page size 1 view:
  one row per KV slot);
* latent-cache writes run :func:`rocm_dsa.ops.store_mla_kv`; the FP8 KV cache is our 656-byte
  record (512 FP8 + 4 fp32 tile scales + 64 bf16 rope, FlashMLA's layout) in the platform's
  FP8 encoding, so gfx942 gets scaled e4m3fnuz where SGLang only has raw (unscaled) FP8;
* the lightning indexer's logits and top-k run :func:`rocm_dsa.ops.indexer_topk` (prefill,
  ragged keys) and :func:`rocm_dsa.ops.indexer_topk_paged` (decode / MTP), and its key-cache
  writes :func:`rocm_dsa.ops.store_indexer_k` (plain DeepGEMM page layout, never aiter's
  preshuffled one); SGLang's top-k transform is :func:`rocm_dsa.ops.topk_indices`.

The indexer is a model layer (``dsa_indexer.Indexer``), not part of the backend; the backend
hands it a :class:`RocmDSAIndexerMetadata`, and :func:`install_indexer_hooks` wraps four
``Indexer`` methods so that calls carrying that metadata (or running while an ``nsa-rocm``
backend exists in the process) take the rocm-dsa path. Every other backend is untouched.

Provider choice (which rocm-dsa implementation runs each op) follows :mod:`rocm_dsa.backends`:
``ROCM_DSA_BACKEND`` (all ops) or ``ROCM_DSA_BACKEND_<OP>`` (e.g. ``ROCM_DSA_BACKEND_SPARSE_MLA_DECODE``)
in the server's environment, else the platform's automatic choice. ``rocm-dsa serve --provider``
sets the former.

Not supported (refused at construction with the reason): index_kpool > 1 (GLM-5 pooled
indexer keys), decode context parallelism (``--dcp-size`` > 1), HiSparse, learnable attention
sinks, prefill context parallelism.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Optional

import torch

from sglang.srt.layers.attention.dsa.dsa_indexer_metadata import DSAIndexerMetadata
from sglang.srt.layers.attention.dsa.dsa_topk_backend import TopkTransformMethod
from sglang.srt.layers.attention.dsa_backend import (
    DeepseekSparseAttnBackend,
    DeepseekSparseAttnMultiStepBackend,
)

from .. import ops
from ..cache import MLA_DIM, MLA_FP8_RECORD_BYTES, indexer_cache_gather, positions_to_slots
from ..fp8 import FP8_DTYPES
from . import BACKEND_NAME

__all__ = [
    "RocmDSABackend",
    "RocmDSAMultiStepBackend",
    "RocmDSAIndexerMetadata",
    "install_indexer_hooks",
    "kv_layout",
]

log = logging.getLogger("rocm_dsa.sglang")

_WRAPPED = "__rocm_dsa_wrapped__"
#: set once an nsa-rocm backend is built in this process (the indexer key store keys off it)
_active = False


# ---------------------------------------------------------------------------------------------
# top-k transform
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RocmDSAIndexerMetadata(DSAIndexerMetadata):
    """SGLang's indexer metadata with the top-k transform done by :func:`rocm_dsa.ops.topk_indices`.

    Always unfused (``force_unfused_topk``) and PAGED: results are request-local positions, the
    backend maps them to KV slots itself. Semantics of SGLang's unfused transform
    (``dsa_topk_backend._topk_unfused``): row r selects inside ``[ks[r], ks[r] + lengths[r])``
    and returns column - ks[r], -1 padded.
    """

    def topk_transform(
        self,
        logits: torch.Tensor,
        topk: int,
        ks: Optional[torch.Tensor] = None,
        cu_seqlens_q: Optional[torch.Tensor] = None,
        ke_offset: Optional[torch.Tensor] = None,
        batch_idx_list=None,
        topk_indices_offset_override: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """logits [R, C] float32 -> [R, topk] int32 request-local positions (-1 padded)."""
        rows = logits.shape[0]
        lengths = ke_offset if ke_offset is not None else self.get_seqlens_expanded()
        lengths = lengths.reshape(-1)[:rows].to(torch.int32)
        starts = torch.zeros_like(lengths) if ks is None else ks.reshape(-1)[:rows].to(torch.int32)
        ends = (starts + lengths).contiguous()
        return ops.topk_indices(logits.float().contiguous(), starts.contiguous(), ends, k=topk)


# ---------------------------------------------------------------------------------------------
# KV layout
# ---------------------------------------------------------------------------------------------
def kv_layout(pool) -> tuple[str, Optional[torch.dtype]]:
    """How rocm-dsa reads an SGLang DSA KV pool: ("bf16", None) or ("fp8", fp8 dtype).

    Raises ValueError for a layout rocm-dsa cannot read (raw FP8 rows without scales when FP8
    records are turned off, or another width).
    """
    if pool.dtype == torch.bfloat16 and pool.kv_cache_dim == MLA_DIM:
        return "bf16", None
    if pool.dtype in FP8_DTYPES:
        return "fp8", pool.dtype
    raise ValueError(
        f"kv cache: nsa-rocm reads bfloat16 latents [.., {MLA_DIM}] or FP8 {MLA_FP8_RECORD_BYTES}-byte "
        f"records; got dtype {pool.dtype} width {pool.kv_cache_dim} "
        "(use --kv-cache-dtype bfloat16 or fp8_e4m3)"
    )


def _records_enabled() -> bool:
    from .plugin import fp8_records_enabled

    return fp8_records_enabled()


def _adopt_fp8_records(pool) -> None:
    """Give ``pool`` 656-byte FP8 record buffers ([size + page_size, 1, 656] uint8 per layer).

    SGLang builds gfx942's FP8 latent cache as raw e4m3fnuz rows of 576 (its scaled record
    path requires e4m3fn); the plugin already made SGLang size the pool for 656 bytes per token,
    here the buffers are rebuilt (one layer at a time, freeing the old one first) and the pool's
    writer is replaced by :func:`rocm_dsa.ops.store_mla_kv`.
    """
    if pool.kv_cache_dim == MLA_FP8_RECORD_BYTES and all(
            b.dtype == torch.uint8 and b.shape[-1] == MLA_FP8_RECORD_BYTES for b in pool.kv_buffer):
        return
    if pool.kv_cache_dim != MLA_FP8_RECORD_BYTES and pool.kv_cache_dim != MLA_DIM:
        raise ValueError(f"kv cache: unexpected latent width {pool.kv_cache_dim} for an FP8 DSA pool")
    if not _sizing_counts_records():
        log.warning("rocm_dsa: SGLang sized the FP8 KV pool for %d-byte rows (the rocm-dsa plugin was not "
                    "loaded when it did); the %d-byte records take about 14%% more latent-cache memory "
                    "than SGLang budgeted", MLA_DIM, MLA_FP8_RECORD_BYTES)
    for i in range(len(pool.kv_buffer)):
        rows = pool.kv_buffer[i].shape[0]
        device = pool.kv_buffer[i].device
        pool.kv_buffer[i] = None
        pool.kv_buffer[i] = torch.zeros(rows, 1, MLA_FP8_RECORD_BYTES, dtype=torch.uint8, device=device)
    pool.kv_cache_dim = MLA_FP8_RECORD_BYTES
    pool.store_dtype = torch.uint8
    if hasattr(pool, "data_ptrs"):
        pool.data_ptrs = torch.tensor([b.data_ptr() for b in pool.kv_buffer], dtype=torch.uint64,
                                      device=pool.data_ptrs.device)


def _sizing_counts_records() -> bool:
    """Whether SGLang's KV sizing went through the plugin's 656-byte width (plugin loaded)."""
    import sys

    mod = sys.modules.get("sglang.srt.mem_cache.kv_cache_configurator")
    fn = getattr(mod, "calculate_mla_kv_cache_dim", None)
    return bool(getattr(fn, _WRAPPED, False))


def _unwrap_loc(loc_info) -> torch.Tensor:
    loc = getattr(loc_info, "loc", loc_info)
    return loc


def _pool_set_mla_kv_buffer(backend: "RocmDSABackend", layer, loc_info, cache_k_nope, cache_k_rope,
                            layer_id_override=None) -> None:
    """Replacement of the pool's ``set_mla_kv_buffer`` once it holds FP8 records."""
    layer_id = layer_id_override if layer_id_override is not None else layer.layer_id
    backend.store_latent(layer_id, _unwrap_loc(loc_info), cache_k_nope, cache_k_rope)


# ---------------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------------
class RocmDSABackend(DeepseekSparseAttnBackend):
    """``--attention-backend nsa-rocm``: SGLang's DSA backend running rocm-dsa ops (module docs).

    Args (as ``DeepseekSparseAttnBackend``):
        model_runner: SGLang ``ModelRunner`` (or a draft runner for MTP).
        skip_prefill, speculative_step_id, topk, speculative_num_steps,
        seed_dsa_topk_from_draft_extend: passed through.

    Attributes:
        kv_format: "bf16" or "fp8" (656-byte records).
        kv_fp8_dtype: FP8 encoding of the records (e4m3fnuz on gfx942), None for bf16.

    Raises:
        NotImplementedError: a model or parallel feature nsa-rocm does not cover (module docs).
        ValueError: a KV cache dtype it cannot read.
    """

    def __init__(self, model_runner, skip_prefill: bool = False, speculative_step_id=0, topk=0,
                 speculative_num_steps=0, seed_dsa_topk_from_draft_extend: bool = False):
        super().__init__(
            model_runner,
            skip_prefill=skip_prefill,
            speculative_step_id=speculative_step_id,
            topk=topk,
            speculative_num_steps=speculative_num_steps,
            seed_dsa_topk_from_draft_extend=seed_dsa_topk_from_draft_extend,
        )
        unsupported = []
        if self.dsa_index_kpool != 1:
            unsupported.append(f"index_kpool={self.dsa_index_kpool} (pooled indexer keys)")
        if self.dcp_size != 1:
            unsupported.append(f"decode context parallelism (--dcp-size {self.dcp_size})")
        if self.hisparse_coordinator is not None:
            unsupported.append("HiSparse")
        if self._kv_shard_pool is not None:
            unsupported.append("KV sharding")
        if getattr(model_runner.model_config.hf_config, "learnable_sink", False):
            unsupported.append("learnable attention sinks")
        try:
            from sglang.srt.layers.attention.dsa.utils import is_dsa_enable_prefill_cp

            if is_dsa_enable_prefill_cp():
                unsupported.append("prefill context parallelism (--enable-prefill-cp)")
        except Exception:  # noqa: BLE001 - older/newer SGLang without the probe
            pass
        try:
            from sglang.srt.runtime_context import attention_backends

            pair = attention_backends()
        except Exception:  # noqa: BLE001 - no published config (unit tests build backends directly)
            pair = (BACKEND_NAME, BACKEND_NAME)
        others = sorted({b for b in pair if b and b != BACKEND_NAME})
        if others and BACKEND_NAME in pair:
            # the indexer key cache has one layout per process; the other backend's would differ
            unsupported.append(f"mixing with attention backend {others[0]!r} (prefill/decode split)")
        if unsupported:
            raise NotImplementedError(
                f"attention backend {BACKEND_NAME!r} does not support: {', '.join(unsupported)}; "
                "use --attention-backend dsa for this configuration"
            )

        # Request-local top-k from our transform; the forward maps positions to slots.
        self.use_fused_topk = False
        # Always the sparse (MLA) path: every token goes through rocm-dsa's sparse MLA.
        self.supports_mha_one_shot = False
        self.use_mha = False

        pool = self.token_to_kv_pool
        if pool.dtype in FP8_DTYPES:
            if not _records_enabled():
                raise ValueError(
                    "kv cache: nsa-rocm reads FP8 latents only as 656-byte records, and "
                    "ROCM_DSA_KV_FP8_RECORD=0 turned them off; use --kv-cache-dtype bfloat16"
                )
            if not pool.dsa_kv_cache_store_fp8:
                _adopt_fp8_records(pool)
                pool.set_mla_kv_buffer = functools.partial(_pool_set_mla_kv_buffer, self)
        self.kv_format, self.kv_fp8_dtype = kv_layout(pool)
        install_indexer_hooks()
        global _active
        _active = True

    # -- dispatch decisions ----------------------------------------------------------------
    def set_dsa_prefill_impl(self, forward_batch=None):
        """SGLang's decision, then pinned to the sparse path (no dense MHA one-shot)."""
        super().set_dsa_prefill_impl(forward_batch)
        self.use_mha = False

    def get_topk_transform_method(self, forward_mode=None) -> TopkTransformMethod:
        """Always PAGED: top-k gives request-local positions, mapped to slots in the forward."""
        return TopkTransformMethod.PAGED

    def _build_topk_v2_plan(self, seqlens_expanded):
        """None: SGLang's fused top-k v2 plan is never read (top-k is rocm-dsa's, unfused)."""
        return None

    def get_indexer_metadata(self, layer_id: int, forward_batch) -> RocmDSAIndexerMetadata:
        """The indexer metadata with :func:`rocm_dsa.ops.topk_indices` as top-k transform."""
        md = self.forward_metadata
        return RocmDSAIndexerMetadata(
            attn_metadata=md,
            topk_transform_method=TopkTransformMethod.PAGED,
            topk_backend=self.dsa_topk_backend,
            paged_mqa_schedule_metadata=md.paged_mqa_schedule_metadata,
            paged_mqa_ctx_lens_2d=md.paged_mqa_ctx_lens_2d,
            force_unfused_topk=True,
        )

    # -- cache -----------------------------------------------------------------------------
    def latent_buffer(self, layer_id: int) -> torch.Tensor:
        """Latent cache of one layer as rocm-dsa reads it: [num_slots, 1, 576] bf16 or
        [num_slots, 1, 656] uint8 records (one row per KV slot, i.e. page size 1)."""
        buf = self.token_to_kv_pool.get_key_buffer(layer_id)
        return buf if self.kv_format == "bf16" else buf.view(torch.uint8)

    def store_latent(self, layer_id: int, loc: torch.Tensor, k_nope: torch.Tensor,
                     k_rope: Optional[torch.Tensor]) -> None:
        """Write latents (k_nope [N, (1,) 512], k_rope [N, (1,) 64]) at KV slots ``loc`` [N] through
        :func:`rocm_dsa.ops.store_mla_kv` (slots < 0 are skipped)."""
        n = loc.shape[0]
        c_kv = k_nope.reshape(k_nope.shape[0], -1)[:n]
        rope = k_rope.reshape(k_rope.shape[0], -1)[:n]
        ops.store_mla_kv(c_kv.contiguous(), rope.contiguous(), self.latent_buffer(layer_id),
                         loc.contiguous(), fp8_dtype=self.kv_fp8_dtype)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _q_all(q: torch.Tensor, q_rope: Optional[torch.Tensor], layer) -> torch.Tensor:
        heads = layer.tp_q_head_num
        if q_rope is not None:
            q_nope = q.reshape(-1, heads, layer.v_head_dim)
            q_pe = q_rope.reshape(q_nope.shape[0], heads, layer.head_dim - layer.v_head_dim)
            q_all = torch.cat([q_nope, q_pe], dim=-1)
        else:
            q_all = q.reshape(-1, heads, layer.head_dim)
        return q_all.to(torch.bfloat16).contiguous()

    def _row_page_table(self, rows: int) -> torch.Tensor:
        """Page-size-1 page table with one row per query row ([rows, max_len] int32)."""
        md = self.forward_metadata
        table = md.page_table_1
        if table.shape[0] == rows:
            return table
        lens = md.dsa_extend_seq_lens_list
        batch = torch.repeat_interleave(
            torch.arange(len(lens), device=table.device),
            torch.tensor(lens, device=table.device),
            output_size=rows,
        )
        return table[batch]

    def _slots(self, topk_indices: torch.Tensor, rows_total: int) -> torch.Tensor:
        """Request-local top-k positions [rows_total, k] -> KV slots (-1 invalid), int32."""
        md = self.forward_metadata
        real = sum(md.dsa_extend_seq_lens_list)
        slots = torch.full_like(topk_indices, -1, dtype=torch.int32)
        if real == 0:
            return slots
        pos = topk_indices[:real]
        table = self._row_page_table(real)
        pos = torch.where(pos < table.shape[1], pos, torch.full_like(pos, -1))
        slots[:real] = positions_to_slots(pos, table, 1)
        return slots

    def _check_sink(self, kwargs) -> None:
        if kwargs.get("attn_sink") is not None:
            raise NotImplementedError(f"attention backend {BACKEND_NAME!r}: learnable attention sinks")

    # -- forward ---------------------------------------------------------------------------
    def _prepare(self, q, k, layer, forward_batch, save_kv_cache, q_rope, k_rope, topk_indices, kwargs):
        """Shared by extend and decode: store the new latents, build q [T, H, 576] and turn the
        indexer's request-local top-k positions into latent-cache slots [T, topk]."""
        self._check_sink(kwargs)
        if topk_indices is None:
            raise RuntimeError(f"attention backend {BACKEND_NAME!r}: the DSA indexer gave no top-k indices")
        if save_kv_cache and k is not None:
            self.store_latent(layer.layer_id, _unwrap_loc(forward_batch.out_cache_loc), k, k_rope)
        q_all = self._q_all(q, q_rope, layer)
        topk_indices = self._pad_topk_indices(topk_indices, q_all.shape[0])
        return q_all, self._slots(topk_indices, q_all.shape[0])

    def forward_extend(self, q, k, v, layer, forward_batch, save_kv_cache=True, q_rope=None, k_rope=None,
                       topk_indices=None, **kwargs):
        """Prefill / MTP verify / draft extend: q [T, H*512] (+ q_rope [T, H, 64]) or [T, H*576];
        latents k [T, 512], k_rope [T, 64]; topk_indices [T', 2048] request-local positions.
        Returns [T, H, 512] (``layer.v_head_dim``) bfloat16."""
        q_all, slots = self._prepare(q, k, layer, forward_batch, save_kv_cache, q_rope, k_rope, topk_indices,
                                     kwargs)
        out, _, _ = ops.sparse_mla_prefill(
            q_all, self.latent_buffer(layer.layer_id), slots.unsqueeze(1).contiguous(),
            sm_scale=layer.scaling, d_v=layer.v_head_dim, fp8_dtype=self.kv_fp8_dtype,
        )
        return out

    def forward_decode(self, q, k, v, layer, forward_batch, save_kv_cache=True, q_rope=None, k_rope=None,
                       topk_indices=None, **kwargs):
        """Decode: one query per request; shapes as :meth:`forward_extend` with T = batch size.
        Returns [B, H, 512] bfloat16."""
        q_all, slots = self._prepare(q, k, layer, forward_batch, save_kv_cache, q_rope, k_rope, topk_indices,
                                     kwargs)
        b = q_all.shape[0]
        out, _ = ops.sparse_mla_decode(
            q_all.unsqueeze(1), self.latent_buffer(layer.layer_id), slots.unsqueeze(1).contiguous(),
            sm_scale=layer.scaling, d_v=layer.v_head_dim, fp8_dtype=self.kv_fp8_dtype,
        )
        return out.reshape(b, q_all.shape[1], layer.v_head_dim)


class RocmDSAMultiStepBackend(DeepseekSparseAttnMultiStepBackend):
    """MTP/EAGLE multi-step draft decode with one :class:`RocmDSABackend` per draft step
    (``DeepseekSparseAttnMultiStepBackend`` with our backend class; same arguments)."""

    def __init__(self, model_runner, topk: int, speculative_num_steps: int,
                 seed_dsa_topk_from_draft_extend: bool = False):
        # SGLang's constructor builds DeepseekSparseAttnBackend instances; build ours instead
        # and set the same attributes its methods read.
        self.topk = topk
        self.speculative_num_steps = speculative_num_steps
        self._sink_pad_cache = {}
        self.attn_backends = [
            RocmDSABackend(
                model_runner,
                speculative_step_id=i,
                topk=topk,
                speculative_num_steps=speculative_num_steps,
                seed_dsa_topk_from_draft_extend=seed_dsa_topk_from_draft_extend,
            )
            for i in range(speculative_num_steps - 1)
        ]


# ---------------------------------------------------------------------------------------------
# indexer hooks
# ---------------------------------------------------------------------------------------------
def _index_page_table(metadata, page_size: int) -> torch.Tensor:
    return metadata.get_page_table_64() if page_size > 1 else metadata.get_page_table_1()


def _mask_special_tokens(indexer, logits, lengths, starts) -> torch.Tensor:
    """SGLang's ``Indexer._mask_init_and_local_tokens`` (+inf on always-kept tokens), in place."""
    return indexer._mask_init_and_local_tokens(logits, lengths, starts)


def _needs_mask(indexer) -> bool:
    return bool(getattr(indexer, "num_init_tokens", 0) or getattr(indexer, "num_local_tokens", 0))


def _get_topk_paged(original, indexer, forward_batch, layer_id, q_fp8, weights, metadata, *args, **kwargs):
    """Decode / MTP verify / draft-extend indexer: :func:`rocm_dsa.ops.indexer_topk_paged` with one
    query row per sequence position (next_n = 1, each row its own visible length)."""
    if not isinstance(metadata, RocmDSAIndexerMetadata):
        return original(indexer, forward_batch, layer_id, q_fp8, weights, metadata, *args, **kwargs)
    from sglang.srt.model_executor.forward_context import get_token_to_kv_pool

    pool = get_token_to_kv_pool()
    page = pool.index_page_size
    buf = indexer._get_index_k_read_buffer(pool, layer_id)
    rows_total = q_fp8.shape[0]
    rows = sum(metadata.get_dsa_extend_len_cpu())
    k = indexer.index_topk
    out = torch.full((rows_total, k), -1, dtype=torch.int32, device=q_fp8.device)
    if rows == 0:
        return out
    mode = forward_batch.forward_mode
    if mode.is_target_verify() or mode.is_draft_extend_v2():
        lens = metadata.get_seqlens_expanded()
    else:
        lens = metadata.get_seqlens_int32()
    lens = lens.reshape(-1)[:rows].to(torch.int32).contiguous()
    table = _index_page_table(metadata, page)
    if table.shape[0] != rows:
        table = torch.repeat_interleave(table, rows // table.shape[0], dim=0)
    table = table[:rows].to(torch.int32).contiguous()
    q = q_fp8[:rows].reshape(rows, 1, q_fp8.shape[-2], q_fp8.shape[-1]).contiguous()
    w = weights[:rows].reshape(rows, -1).float().contiguous()
    if _needs_mask(indexer):
        logits = ops.indexer_logits_paged(q, buf, w, lens, table)
        _mask_special_tokens(indexer, logits, lens, None)
        zero = torch.zeros_like(lens)
        out[:rows] = ops.topk_indices(logits, zero, lens, k=k)
    else:
        out[:rows] = ops.indexer_topk_paged(q, buf, w, lens, table, k=k)
    return out


def _get_topk_ragged(original, indexer, enable_dual_stream, forward_batch, layer_id, q_fp8, weights, metadata,
                     topk_result=None, *args, **kwargs):
    """Prefill indexer: keys of every request gathered from the paged key cache, then
    :func:`rocm_dsa.ops.indexer_topk` over the windows [ks, ke) SGLang computed."""
    if not isinstance(metadata, RocmDSAIndexerMetadata):
        return original(indexer, enable_dual_stream, forward_batch, layer_id, q_fp8, weights, metadata,
                        topk_result, *args, **kwargs)
    from sglang.srt.model_executor.forward_context import get_token_to_kv_pool

    pool = get_token_to_kv_pool()
    page = pool.index_page_size
    buf = indexer._get_index_k_read_buffer(pool, layer_id)
    k = indexer.index_topk
    device = q_fp8.device
    if topk_result is None:
        topk_result = torch.full((q_fp8.shape[0], k), -1, dtype=torch.int32, device=device)
    ks, ke = metadata.get_indexer_kvcache_range()
    rows = ks.shape[0]
    lens_cpu = metadata.get_indexer_seq_len_cpu()
    total = int(lens_cpu.sum())
    if rows == 0 or total == 0:
        return topk_result
    lens = metadata.get_indexer_seq_len().to(device=device, dtype=torch.int64)
    batch = torch.repeat_interleave(torch.arange(lens.shape[0], device=device), lens, output_size=total)
    first = torch.cumsum(lens, 0) - lens
    pos = torch.arange(total, device=device) - first[batch]
    table = _index_page_table(metadata, page).long()
    slots = table[batch, pos // page] * page + pos % page
    k_fp8, k_scale = indexer_cache_gather(buf, slots, q_fp8.dtype)
    q = q_fp8[:rows].contiguous()
    w = weights[:rows].reshape(rows, -1).float().contiguous()
    ks32, ke32 = ks.to(torch.int32).contiguous(), ke.to(torch.int32).contiguous()
    if _needs_mask(indexer):
        logits = ops.indexer_logits(q, k_fp8.contiguous(), k_scale.contiguous(), w, ks32, ke32)
        _mask_special_tokens(indexer, logits, ke32 - ks32, ks32)
        topk_result[:rows] = ops.topk_indices(logits, ks32, ke32, k=k)
    else:
        topk_result[:rows] = ops.indexer_topk(q, k_fp8.contiguous(), k_scale.contiguous(), w, ks32, ke32, k=k)
    return topk_result


def _store_index_k_cache(original, indexer, forward_batch, layer_id, key, *args, act_quant=None,
                         out_cache_loc=None, **kwargs):
    """Indexer key-cache write through :func:`rocm_dsa.ops.store_indexer_k` (plain page layout)
    while an nsa-rocm backend exists in the process."""
    scale_fmt = getattr(indexer, "scale_fmt", "ue8m0")
    if not _active or scale_fmt not in (None, "ue8m0") or args:
        return original(indexer, forward_batch, layer_id, key, *args, act_quant=act_quant,
                        out_cache_loc=out_cache_loc, **kwargs)
    from sglang.srt.layers.attention.dsa import dsa_indexer
    from sglang.srt.model_executor.forward_context import get_token_to_kv_pool

    if out_cache_loc is None:
        out_cache_loc = forward_batch.out_cache_loc
    pool = get_token_to_kv_pool()
    if hasattr(pool, "invalidate_index_buffer_for_layer"):
        pool.invalidate_index_buffer_for_layer(layer_id)
    if hasattr(pool, "_is_layer_owned") and not pool._is_layer_owned(layer_id):
        return None
    fp8_dtype = dsa_indexer.fp8_dtype
    n = out_cache_loc.shape[0]
    ops.store_indexer_k(key.reshape(-1, key.shape[-1])[:n].contiguous(),
                        pool.get_index_k_with_scale_buffer(layer_id=layer_id),
                        _unwrap_loc(out_cache_loc).contiguous(), fp8_dtype=fp8_dtype, scale_fmt=scale_fmt)
    return None


def _aiter_fused_fp8_active(original, indexer, forward_batch, *args, **kwargs):
    """aiter's fused q/k writer stores preshuffled keys rocm-dsa does not read: off under nsa-rocm."""
    if _active:
        return False
    return original(indexer, forward_batch, *args, **kwargs)


_INDEXER_HOOKS = {
    "_get_topk_paged": _get_topk_paged,
    "_get_topk_ragged": _get_topk_ragged,
    "_store_index_k_cache": _store_index_k_cache,
    "_aiter_fused_fp8_active": _aiter_fused_fp8_active,
}


def install_indexer_hooks() -> list[str]:
    """Wrap ``dsa_indexer.Indexer`` methods so nsa-rocm calls take the rocm-dsa path (idempotent).

    Returns the names of the methods wrapped (all of :data:`_INDEXER_HOOKS` once installed); a
    method missing from this SGLang version is logged and skipped.
    """
    from sglang.srt.layers.attention.dsa.dsa_indexer import Indexer

    done = []
    for name, hook in _INDEXER_HOOKS.items():
        original = getattr(Indexer, name, None)
        if original is None:
            log.warning("rocm_dsa: sglang Indexer has no %s; nsa-rocm keeps SGLang's", name)
            continue
        if not getattr(original, _WRAPPED, False):
            setattr(Indexer, name, _make_method(hook, original))
        done.append(name)
    return done


def _make_method(hook, original):
    @functools.wraps(original)
    def method(self, *args, **kwargs):
        return hook(original, self, *args, **kwargs)

    setattr(method, _WRAPPED, True)
    return method
