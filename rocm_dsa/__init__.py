"""rocm-dsa: DeepSeek Sparse Attention (lightning indexer, top-k, sparse MLA) for AMD Instinct
GPUs, behind one op interface with reference, Triton, HIP and vendor providers.

``import rocm_dsa`` needs only torch: providers load on first use.
"""

from .backends import ProviderError
from .cache import IndexerKCache, MLAKVCache
from .config import DSAConfig, deepseek_v32
from .fp8 import ocp_to_fnuz, quantize_fp8
from .ops import (
    indexer_logits,
    indexer_logits_paged,
    indexer_topk,
    indexer_topk_paged,
    sparse_mla_decode,
    sparse_mla_prefill,
    store_indexer_k,
    store_mla_kv,
    topk_indices,
)

__version__ = "0.1.0"

__all__ = [
    "ProviderError",
    "DSAConfig",
    "deepseek_v32",
    "IndexerKCache",
    "MLAKVCache",
    "quantize_fp8",
    "ocp_to_fnuz",
    "indexer_logits",
    "indexer_logits_paged",
    "topk_indices",
    "indexer_topk",
    "indexer_topk_paged",
    "sparse_mla_prefill",
    "sparse_mla_decode",
    "store_indexer_k",
    "store_mla_kv",
]
