"""The ``sglang.srt.plugins`` entry point and every SGLang name registry (real SGLang 0.5.23)."""

from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from rocm_dsa.sglang import BACKEND_NAME
from rocm_dsa.sglang.plugin import REGISTRY_MODULES

HEAVY = ("sglang.srt.models.deepseek_common.utils", "sglang.srt.layers.attention.attention_registry",
         "sglang.srt.layers.attention.dsa_backend", "sglang.srt.speculative.draft_utils")


def test_entry_point_is_declared():
    eps = importlib.metadata.entry_points(group="sglang.srt.plugins")
    ours = [ep for ep in eps if ep.value == "rocm_dsa.sglang.plugin:register"]
    assert ours, ("pyproject.toml lacks [project.entry-points.\"sglang.srt.plugins\"] "
                  "rocm_dsa = \"rocm_dsa.sglang.plugin:register\" (reinstall after adding it)")
    assert ours[0].load().__module__ == "rocm_dsa.sglang.plugin"


def test_register_never_raises_without_sglang(run_python):
    r = run_python("""
        import sys
        sys.modules["sglang"] = None          # SGLang absent
        from rocm_dsa.sglang import sglang_available
        from rocm_dsa.sglang.plugin import register
        register(); register()
        assert not sglang_available()
        import rocm_dsa, torch                 # the rest of rocm-dsa still works
        x = torch.randn(4, 8)
        out = rocm_dsa.topk_indices(x, torch.zeros(4, dtype=torch.int32), torch.full((4,), 8, dtype=torch.int32),
                                    k=3, provider="reference")
        assert out.shape == (4, 3)
        print("ok")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_load_plugins_discovers_and_registers_cheaply(sglang_required, run_python):
    """SGLang's own load_plugins() finds the entry point; in a launcher-like process it adds the
    choice without importing model code, and prepare_server_args then accepts nsa-rocm (and
    rejected it before: the control)."""
    r = run_python(f"""
        import contextlib, io, sys, time
        from sglang.srt.plugins import load_plugins, load_plugins_by_group
        from sglang.srt.server_args import prepare_server_args
        argv = ["--model-path", "deepseek-ai/DeepSeek-V3.2", "--tp", "8",
                "--attention-backend", "{BACKEND_NAME}", "--page-size", "64"]
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                prepare_server_args(argv)
            raise AssertionError("SGLang accepted an unregistered backend")
        except SystemExit as e:
            assert e.code == 2
        found = load_plugins_by_group("sglang.srt.plugins")
        assert "rocm_dsa" in found, sorted(found)
        t = time.process_time()
        load_plugins()
        dt = time.process_time() - t
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, heavy
        from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES
        assert "{BACKEND_NAME}" in ATTENTION_BACKEND_CHOICES
        args = prepare_server_args(argv)
        assert args.attention_backend == "{BACKEND_NAME}" and args.tp_size == 8 and args.page_size == 64
        print("load_plugins_cpu_s", dt)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "load_plugins_cpu_s" in r.stdout


def test_every_registry_contains_nsa_rocm(sglang_required):
    from rocm_dsa.sglang.plugin import create_backend, register, registrations

    register()
    regs = registrations()
    assert set(regs) == set(REGISTRY_MODULES)
    assert all(regs.values()), regs

    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS
    from sglang.srt.models.deepseek_common import attention_backend_handler as h
    from sglang.srt.models.deepseek_common.utils import FORWARD_ABSORB_CORE_ATTENTION_BACKENDS

    assert ATTENTION_BACKENDS[BACKEND_NAME] is create_backend
    assert h.AttentionBackendRegistry.get_handler(BACKEND_NAME) is h.handle_attention_dsa
    assert h.AttentionBackendRegistry.get_handler("no-such-backend") is h.handle_attention_triton
    assert BACKEND_NAME in FORWARD_ABSORB_CORE_ATTENTION_BACKENDS
    # registering twice changes nothing
    n = len(FORWARD_ABSORB_CORE_ATTENTION_BACKENDS)
    register()
    assert len(FORWARD_ABSORB_CORE_ATTENTION_BACKENDS) == n


def test_dsa_handler_takes_mla_path_for_our_backend(sglang_required):
    from sglang.srt.models.deepseek_common.attention_backend_handler import AttentionBackendRegistry
    from sglang.srt.models.deepseek_common.attention_forward_methods.forward_methods import AttnForwardMethod

    from rocm_dsa.sglang.plugin import register

    register()
    handler = AttentionBackendRegistry.get_handler(BACKEND_NAME)
    backend = SimpleNamespace(use_mha=False)
    with mock.patch("sglang.srt.models.deepseek_common.attention_backend_handler.get_attn_backend",
                    return_value=backend):
        assert handler(SimpleNamespace(), SimpleNamespace()) == AttnForwardMethod.MLA


@pytest.mark.parametrize("decode", [True, False], ids=["decode", "draft_extend"])
def test_draft_backend_maps(published, decode):
    """MTP: DraftBackendFactory resolves nsa-rocm to our backends and stamps the name."""
    from sglang.srt.speculative import draft_utils

    made = []

    def fake(*args, **kwargs):
        obj = SimpleNamespace(args=args, kwargs=kwargs, attn_backends=[SimpleNamespace(), SimpleNamespace()])
        made.append(obj)
        return obj

    runner = SimpleNamespace(draft_attention_backend=None, model_config=SimpleNamespace(hf_config=SimpleNamespace()))
    factory = draft_utils.DraftBackendFactory(runner, topk=1, speculative_num_steps=3)
    with mock.patch("rocm_dsa.sglang.backend.RocmDSAMultiStepBackend", side_effect=fake), \
            mock.patch("rocm_dsa.sglang.backend.RocmDSABackend", side_effect=fake), \
            mock.patch.object(draft_utils, "attention_backends", return_value=(BACKEND_NAME, BACKEND_NAME)), \
            mock.patch("sglang.srt.layers.attention.attention_registry.attn_backend_wrapper_for_draft_decode",
                       side_effect=lambda r, b: b), \
            mock.patch("sglang.srt.layers.attention.attention_registry.attn_backend_wrapper_for_draft_extend",
                       side_effect=lambda r, b: b), \
            mock.patch.object(draft_utils, "_assert_draft_needs_no_conv_sidecar", lambda r: None):
        backend = factory.create_decode_backend() if decode else factory.create_draft_extend_backend()
    assert made and backend is made[0]
    assert backend.prefill_attention_backend_str == BACKEND_NAME
    assert backend.decode_attention_backend_str == BACKEND_NAME
    if decode:
        assert backend.args[1:] == (1, 3)
        assert all(c.decode_attention_backend_str == BACKEND_NAME for c in backend.attn_backends)
    else:
        assert backend.kwargs["skip_prefill"] is False


def test_fp8_record_width_only_for_nsa_rocm(published):
    from sglang.srt.mem_cache import kv_cache_configurator as kvc
    from sglang.srt.runtime_context import get_exec

    hf = SimpleNamespace(architectures=["DeepseekV32ForCausalLM"], index_topk=2048)
    mc = SimpleNamespace(hf_config=hf, kv_lora_rank=512, qk_rope_head_dim=64)
    assert kvc.calculate_mla_kv_cache_dim(model_config=mc, kv_cache_dtype=torch.bfloat16) == 576
    for dt in (torch.float8_e4m3fnuz, torch.float8_e4m3fn):
        assert kvc.calculate_mla_kv_cache_dim(model_config=mc, kv_cache_dtype=dt) == 656
    with get_exec().kernel.override(attention_backend="dsa", dsa_prefill_backend="triton",
                                    dsa_decode_backend="triton"):
        # SGLang's own answer for its backend is untouched: it has no scaled e4m3fnuz layout
        assert kvc.calculate_mla_kv_cache_dim(model_config=mc, kv_cache_dtype=torch.float8_e4m3fnuz) == 576
