"""A DeepSeek-V3.2 DSA attention layer built only from the public op interface, its weights
(DeepSeek-V3.2 safetensors names, FP8 block-128 dequantization, TP slicing), RoPE / Hadamard
helpers, paged caches with page tables, a dense reference, and the ``rocm-dsa run`` job."""

from .dense import dense_mla_reference
from .hadamard import hadamard_matrix, hadamard_transform
from .layer import DSAAttentionLayer, StepTrace
from .paging import PagedKVCaches
from .rope import apply_rope, apply_rope_half_split, apply_rope_interleaved, rope_angles, yarn_inv_freq
from .weights import LayerWeights, dequantize_block_fp8, load_layer_weights, random_layer_weights

__all__ = [
    "DSAAttentionLayer",
    "StepTrace",
    "PagedKVCaches",
    "LayerWeights",
    "load_layer_weights",
    "random_layer_weights",
    "dequantize_block_fp8",
    "dense_mla_reference",
    "hadamard_matrix",
    "hadamard_transform",
    "yarn_inv_freq",
    "rope_angles",
    "apply_rope",
    "apply_rope_interleaved",
    "apply_rope_half_split",
]
