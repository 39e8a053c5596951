"""SGLang plugin: makes ``--attention-backend nsa-rocm`` exist in every SGLang process.

Entry point (pyproject): group ``sglang.srt.plugins``, ``rocm_dsa = "rocm_dsa.sglang.plugin:register"``.
SGLang 0.5.23 calls :func:`register` through ``sglang.srt.plugins.load_plugins()`` early in every
process: the launcher (``python -m sglang.launch_server`` / ``sglang serve``), the engine, the
schedulers (one per TP rank), the detokenizer and the data-parallel controller.

SGLang looks attention backends up by name in five places (0.5.23 source):

1. ``sglang.srt.arg_groups.choices.ATTENTION_BACKEND_CHOICES`` -- the argparse choices of
   ``--attention-backend`` / ``--prefill-attention-backend`` / ``--decode-attention-backend``;
   extended through SGLang's public ``add_attention_backend_choices``.
2. ``sglang.srt.layers.attention.attention_registry.ATTENTION_BACKENDS`` -- name -> factory
   ``fn(model_runner)`` used by the model runner.
3. ``sglang.srt.models.deepseek_common.attention_backend_handler.AttentionBackendRegistry`` --
   name -> handler choosing the DeepSeek attention forward method; an unknown name falls back
   to the ``triton`` handler (dense MHA for prefill), so ``nsa-rocm`` gets the DSA handler.
4. ``sglang.srt.models.deepseek_common.utils.FORWARD_ABSORB_CORE_ATTENTION_BACKENDS`` -- the
   backends that receive q_nope / q_rope / k_rope split (absorbed MLA) instead of one q.
5. ``sglang.srt.speculative.draft_utils.DraftBackendFactory`` -- the per-call name -> factory
   maps of MTP/EAGLE draft backends (decode and draft-extend); ``nsa-rocm`` is added next to
   ``dsa`` in both.

Plus, for the FP8 KV cache in our 656-byte record: the latent-cache width SGLang sizes the pool
with (``kv_cache_configurator.calculate_mla_kv_cache_dim``) is 656 when ``nsa-rocm`` runs a DSA
model with an FP8 KV cache (SGLang sizes gfx942's raw e4m3fnuz cache at 576).

Only (1) is done at once (the module is tiny and the launcher has already imported it). (2)-(5)
are registered when SGLang imports those modules (:func:`when_imported`), so the launcher never
imports model code and ``register()`` costs microseconds. ``register()`` never raises: a
failure is logged (logger ``rocm_dsa.sglang``) and SGLang goes on without ``nsa-rocm``.
"""

from __future__ import annotations

import functools
import logging
import os

from . import BACKEND_NAME
from ._import_hooks import when_imported

__all__ = ["register", "REGISTRY_MODULES", "registrations"]

log = logging.getLogger("rocm_dsa.sglang")

#: module -> what we register there (for docs, tests and ``rocm-dsa serve --dry-run``)
REGISTRY_MODULES: dict[str, str] = {
    "sglang.srt.arg_groups.choices": "ATTENTION_BACKEND_CHOICES (add_attention_backend_choices)",
    "sglang.srt.layers.attention.attention_registry": "ATTENTION_BACKENDS[name] = factory",
    "sglang.srt.models.deepseek_common.attention_backend_handler": "AttentionBackendRegistry handler",
    "sglang.srt.models.deepseek_common.utils": "FORWARD_ABSORB_CORE_ATTENTION_BACKENDS",
    "sglang.srt.speculative.draft_utils": "DraftBackendFactory decode / draft-extend maps",
    "sglang.srt.mem_cache.kv_cache_configurator": "calculate_mla_kv_cache_dim (FP8 656-byte records)",
}

_WRAPPED = "__rocm_dsa_wrapped__"
_registered = False


# ---------------------------------------------------------------------------------------------
# (1) argparse choices
# ---------------------------------------------------------------------------------------------
def _add_choice() -> None:
    from sglang.srt.arg_groups import choices

    if BACKEND_NAME not in choices.ATTENTION_BACKEND_CHOICES:
        choices.add_attention_backend_choices([BACKEND_NAME])


# ---------------------------------------------------------------------------------------------
# (2) backend factory
# ---------------------------------------------------------------------------------------------
def create_backend(model_runner):
    """``ATTENTION_BACKENDS["nsa-rocm"]``: build :class:`~rocm_dsa.sglang.backend.RocmDSABackend`.

    The backend module (and with it SGLang's DSA backend) is imported here, inside the model
    runner's process, never at plugin load.
    """
    from .backend import RocmDSABackend

    return RocmDSABackend(model_runner)


def _on_attention_registry(module) -> None:
    module.ATTENTION_BACKENDS.setdefault(BACKEND_NAME, create_backend)


# ---------------------------------------------------------------------------------------------
# (3) DeepSeek attention-handler registry
# ---------------------------------------------------------------------------------------------
def _on_attention_handler(module) -> None:
    registry = module.AttentionBackendRegistry
    if BACKEND_NAME not in registry._handlers:
        # same decision as SGLang's DSA backend: MLA (sparse) unless the backend chose MHA
        registry.register(BACKEND_NAME, module.handle_attention_dsa)


# ---------------------------------------------------------------------------------------------
# (4) absorbed-MLA backend list
# ---------------------------------------------------------------------------------------------
def _on_deepseek_utils(module) -> None:
    names = module.FORWARD_ABSORB_CORE_ATTENTION_BACKENDS
    if BACKEND_NAME not in names:
        names.append(BACKEND_NAME)


# ---------------------------------------------------------------------------------------------
# (5) MTP / EAGLE draft-backend maps
# ---------------------------------------------------------------------------------------------
def _draft_entry(factory, decode: bool):
    """Map entry for ``nsa-rocm``: returns (stamp, backend) like SGLang's own entries."""
    from .backend import RocmDSABackend, RocmDSAMultiStepBackend

    if decode:
        backend = RocmDSAMultiStepBackend(
            factory.draft_model_runner,
            factory.topk,
            factory.speculative_num_steps,
            seed_dsa_topk_from_draft_extend=factory.seed_dsa_topk_from_draft_extend,
        )
    else:
        backend = RocmDSABackend(
            factory.draft_model_runner,
            skip_prefill=False,
            seed_dsa_topk_from_draft_extend=factory.seed_dsa_topk_from_draft_extend,
        )
    return BACKEND_NAME, backend


def _on_draft_utils(module) -> None:
    cls = module.DraftBackendFactory
    original = cls._create_backend
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def _create_backend(self, backend_name, backend_map, *args, **kwargs):
        dsa_entry = backend_map.get("dsa")
        if dsa_entry is not None and BACKEND_NAME not in backend_map:
            decode = dsa_entry == self._create_dsa_decode_backend
            backend_map = {**backend_map, BACKEND_NAME: functools.partial(_draft_entry, self, decode)}
        return original(self, backend_name, backend_map, *args, **kwargs)

    setattr(_create_backend, _WRAPPED, True)
    cls._create_backend = _create_backend


# ---------------------------------------------------------------------------------------------
# (6) FP8 latent-cache width
# ---------------------------------------------------------------------------------------------
def fp8_records_enabled() -> bool:
    """FP8 KV in 656-byte records (default on). ``ROCM_DSA_KV_FP8_RECORD=0`` turns it off, which
    makes ``nsa-rocm`` refuse an FP8 KV cache (rocm-dsa's sparse MLA reads bf16 rows or records)."""
    return os.environ.get("ROCM_DSA_KV_FP8_RECORD", "1").strip().lower() not in ("0", "false", "no", "off")


def _nsa_rocm_configured() -> bool:
    from sglang.srt.runtime_context import attention_backends

    return BACKEND_NAME in attention_backends()


def _on_kv_cache_configurator(module) -> None:
    original = module.calculate_mla_kv_cache_dim
    if getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def calculate_mla_kv_cache_dim(*, model_config, kv_cache_dtype):
        dim = original(model_config=model_config, kv_cache_dtype=kv_cache_dtype)
        try:
            import torch

            from sglang.srt.configs.model_config import is_deepseek_dsa

            if (kv_cache_dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz) and fp8_records_enabled()
                    and is_deepseek_dsa(model_config.hf_config) and _nsa_rocm_configured()):
                from ..cache import MLA_FP8_RECORD_BYTES

                return MLA_FP8_RECORD_BYTES
        except Exception:  # noqa: BLE001 - keep SGLang's own answer on any surprise
            log.exception("rocm_dsa: FP8 record width check failed; using SGLang's width %d", dim)
        return dim

    setattr(calculate_mla_kv_cache_dim, _WRAPPED, True)
    module.calculate_mla_kv_cache_dim = calculate_mla_kv_cache_dim


_HOOKS = {
    "sglang.srt.layers.attention.attention_registry": _on_attention_registry,
    "sglang.srt.models.deepseek_common.attention_backend_handler": _on_attention_handler,
    "sglang.srt.models.deepseek_common.utils": _on_deepseek_utils,
    "sglang.srt.speculative.draft_utils": _on_draft_utils,
    "sglang.srt.mem_cache.kv_cache_configurator": _on_kv_cache_configurator,
}


def register() -> None:
    """Entry point of the ``sglang.srt.plugins`` group: add ``nsa-rocm`` everywhere SGLang
    looks attention backends up by name (module docstring). Idempotent, cheap, never raises."""
    global _registered
    if _registered:
        return
    try:
        _add_choice()
    except Exception:  # noqa: BLE001 - plugins must not break SGLang's startup
        log.exception("rocm_dsa: cannot add %r to SGLang's attention-backend choices", BACKEND_NAME)
    for module_name, hook in _HOOKS.items():
        try:
            when_imported(module_name, hook)
        except Exception:  # noqa: BLE001
            log.exception("rocm_dsa: cannot register %r in %s", BACKEND_NAME, module_name)
    _registered = True


def registrations() -> dict[str, bool]:
    """Where ``nsa-rocm`` is registered right now (imports the registry modules; for checks).

    Returns {module: registered}. Raises ImportError when SGLang is not importable.
    """
    import importlib

    out: dict[str, bool] = {}
    choices = importlib.import_module("sglang.srt.arg_groups.choices")
    out["sglang.srt.arg_groups.choices"] = BACKEND_NAME in choices.ATTENTION_BACKEND_CHOICES
    reg = importlib.import_module("sglang.srt.layers.attention.attention_registry")
    out["sglang.srt.layers.attention.attention_registry"] = BACKEND_NAME in reg.ATTENTION_BACKENDS
    handler = importlib.import_module("sglang.srt.models.deepseek_common.attention_backend_handler")
    out["sglang.srt.models.deepseek_common.attention_backend_handler"] = (
        BACKEND_NAME in handler.AttentionBackendRegistry._handlers)
    utils = importlib.import_module("sglang.srt.models.deepseek_common.utils")
    out["sglang.srt.models.deepseek_common.utils"] = BACKEND_NAME in utils.FORWARD_ABSORB_CORE_ATTENTION_BACKENDS
    draft = importlib.import_module("sglang.srt.speculative.draft_utils")
    out["sglang.srt.speculative.draft_utils"] = getattr(draft.DraftBackendFactory._create_backend, _WRAPPED, False)
    kvc = importlib.import_module("sglang.srt.mem_cache.kv_cache_configurator")
    out["sglang.srt.mem_cache.kv_cache_configurator"] = getattr(kvc.calculate_mla_kv_cache_dim, _WRAPPED, False)
    return out
