"""``rocm-dsa serve``: argument building (no SGLang needed), SGLang's parser accepting the result,
the install hint without SGLang, and the hand-off to ``sglang.launch_server``."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from rocm_dsa.sglang import BACKEND_NAME, INSTALL_HINT
from rocm_dsa.sglang.serve_args import ALIASES, MI300X_DEFAULTS, build_plan, find_flag

MODEL = "deepseek-ai/DeepSeek-V3.2"


def _app():
    import typer

    from rocm_dsa.cli import serve as serve_cmd

    app = typer.Typer()
    serve_cmd.register(app)

    @app.command("noop")   # a second command keeps typer in multi-command mode, like rocm-dsa
    def _noop() -> None:
        pass

    return app


def _invoke(*args):
    return CliRunner().invoke(_app(), ["serve", *args])


# ---------------------------------------------------------------------------------------------
# build_plan
# ---------------------------------------------------------------------------------------------
def test_defaults_and_backend():
    plan = build_plan(model_path=MODEL, tp_size=8)
    assert plan.args[:6] == ["--model-path", MODEL, "--tp-size", "8", "--attention-backend", BACKEND_NAME]
    for flag, value in MI300X_DEFAULTS:
        assert find_flag(plan.args, flag) == (plan.args.index(flag), value)
    assert plan.defaults == dict(MI300X_DEFAULTS) and plan.overridden == {} and plan.env == {}
    assert plan.command[1:3] == ["-m", "sglang.launch_server"]


@pytest.mark.parametrize("override", [["--page-size", "1"], ["--page-size=1"]], ids=["space", "equals"])
def test_user_overrides_a_default(override):
    plan = build_plan(override, model_path=MODEL)
    assert plan.args.count("--page-size") + sum(a.startswith("--page-size=") for a in plan.args) == 1
    assert plan.overridden == {"--page-size": "1"}
    assert "--page-size" not in plan.defaults


def test_pass_through_keeps_order_and_multinode_flags():
    extra = ["--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000", "--port", "30001",
             "--enable-dp-attention", "--dp", "8"]
    plan = build_plan(extra, model_path=MODEL, tp_size=16)
    assert plan.args[-len(extra):] == extra


def test_tp_spellings_and_model_in_pass_through():
    plan = build_plan(["--model", MODEL, "--tp", "8"])
    assert "--tp-size" in plan.args and "--tp" not in plan.args
    assert build_plan(["--model-path", MODEL, "--tp=4"]).args.count("--tp-size=4") == 1


def test_user_backend_wins():
    plan = build_plan(["--attention-backend", "dsa"], model_path=MODEL)
    assert plan.args.count("--attention-backend") == 1 and find_flag(plan.args, "--attention-backend")[1] == "dsa"


def test_provider_sets_env():
    assert build_plan(model_path=MODEL, provider="triton").env == {"ROCM_DSA_BACKEND": "triton"}
    with pytest.raises(ValueError, match="provider"):
        build_plan(model_path=MODEL, provider="no-such-provider")


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "model_path"),
    (dict(model_path=MODEL, extra=["--model-path", "x"]), "both"),
    (dict(model_path=MODEL, tp_size=8, extra=["--tp-size", "2"]), "both"),
    (dict(model_path=MODEL, tp_size=0), "tp_size"),
    (dict(model_path="deepseek-ai/DeepSeek-V3.2", tp_size=3), "divisor of num_heads=128"),
    (dict(model_path="deepseek-ai/DeepSeek-V3.2-Exp", extra=["--tp=6"]), "got 6"),
])
def test_bad_options(kwargs, match):
    extra = kwargs.pop("extra", [])
    with pytest.raises(ValueError, match=match):
        build_plan(extra, **kwargs)


def test_tp_must_divide_the_heads_of_a_local_config(tmp_path):
    """A local DSA config's num_attention_heads decides; configs that are not DSA configs and
    hub ids other than DeepSeek-V3.2's are left to SGLang (no download here)."""
    model = tmp_path / "dsa-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_attention_heads": 64, "kv_lora_rank": 512,
                                                   "index_n_heads": 32}))
    build_plan([], model_path=str(model), tp_size=4)
    with pytest.raises(ValueError, match="divisor of num_heads=64"):
        build_plan([], model_path=str(model), tp_size=3)
    (model / "config.json").write_text("{}")
    build_plan([], model_path=str(model), tp_size=3)
    build_plan([], model_path="some-org/other-model", tp_size=3)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def test_cli_dry_run_json_passes_unknown_args_through(monkeypatch):
    monkeypatch.setattr("rocm_dsa.sglang.sglang_available", lambda: False)
    r = _invoke("--dry-run", "--json", "--model-path", MODEL, "--tp", "8", "--nnodes", "2", "--node-rank", "0",
                "--dist-init-addr", "10.0.0.1:5000", "--mem-fraction-static=0.7")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["args"][:6] == ["--model-path", MODEL, "--tp-size", "8", "--attention-backend", BACKEND_NAME]
    assert rep["args"][-7:] == ["--nnodes", "2", "--node-rank", "0", "--dist-init-addr", "10.0.0.1:5000",
                                "--mem-fraction-static=0.7"]
    assert rep["overridden"] == {"--mem-fraction-static": "0.7"}
    assert rep["validated"] is None and rep["error"] == INSTALL_HINT


def test_cli_without_sglang_fails_with_install_hint(monkeypatch):
    monkeypatch.setattr("rocm_dsa.sglang.sglang_available", lambda: False)
    r = _invoke("--model-path", MODEL, "--tp", "8")
    assert r.exit_code == 1
    assert 'pip install "rocm-dsa[sglang]"' in " ".join(r.output.split())


def test_cli_bad_option_exit_2():
    r = _invoke("--dry-run", "--tp", "8")
    assert r.exit_code == 2 and "--model-path is required" in r.output


def test_cli_without_sglang_in_a_fresh_process(run_python):
    """SGLang really absent: the hint, and every other command still loads."""
    r = run_python(f"""
        import sys
        sys.modules["sglang"] = None
        from typer.testing import CliRunner
        from rocm_dsa.cli import app, _register
        _register()
        names = sorted(c.name for c in app.registered_commands)
        assert "serve" in names, names
        r = CliRunner().invoke(app, ["serve", "--model-path", "{MODEL}"])
        assert r.exit_code == 1, r.output
        assert "rocm-dsa[sglang]" in r.output
        print("commands", names)
    """)
    assert r.returncode == 0, r.stderr[-3000:]


def test_launch_hands_over_to_sglang_launch_server(monkeypatch):
    from rocm_dsa.sglang import serve_args

    seen = {}

    def fake_run_module(name, run_name=None, alter_sys=False):
        seen.update(name=name, run_name=run_name, argv=list(sys.argv), env=dict(__import__("os").environ))

    monkeypatch.setattr(serve_args, "sglang_available", lambda: True)
    monkeypatch.setattr("runpy.run_module", fake_run_module)
    monkeypatch.setattr("rocm_dsa.sglang.plugin.register", lambda: None)
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    plan = build_plan(["--port", "30001"], model_path=MODEL, tp_size=8, provider="reference")
    argv = list(sys.argv)
    try:
        serve_args.launch(plan)
    finally:
        monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    assert seen["name"] == "sglang.launch_server" and seen["run_name"] == "__main__"
    assert seen["argv"] == ["sglang.launch_server", *plan.args]
    assert seen["env"]["ROCM_DSA_BACKEND"] == "reference"
    assert sys.argv == argv


# ---------------------------------------------------------------------------------------------
# against SGLang's parser
# ---------------------------------------------------------------------------------------------
def test_aliases_match_sglang_parser(sglang_required):
    import argparse

    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    by_dest = {a.dest: set(a.option_strings) for a in parser._actions}
    for canonical, spellings in ALIASES.items():
        dest = canonical.lstrip("-").replace("-", "_")
        exact = set(spellings) - {"--tp"}        # --tp: argparse prefix of --tp-size
        assert exact == by_dest[dest], (canonical, by_dest[dest])


def test_dry_run_is_accepted_by_sglang(sglang_required):
    r = _invoke("--dry-run", "--json", "--model-path", MODEL, "--tp", "8", "--nnodes", "2", "--node-rank", "1",
                "--dist-init-addr", "10.0.0.1:5000")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["validated"] is True, rep["error"]

    from rocm_dsa.sglang.serve_args import validate

    args = validate(build_plan(["--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000"],
                               model_path=MODEL, tp_size=8))
    assert (args.attention_backend, args.tp_size, args.page_size) == (BACKEND_NAME, 8, 64)
    assert (args.kv_cache_dtype, args.mem_fraction_static) == ("bfloat16", 0.85)
    assert (args.nnodes, args.node_rank, args.dist_init_addr) == (2, 1, "10.0.0.1:5000")


def test_dry_run_reports_sglang_rejection(sglang_required):
    r = _invoke("--dry-run", "--json", "--model-path", MODEL, "--kv-cache-dtype", "fp3")
    assert r.exit_code == 1
    rep = json.loads(r.stdout)
    assert rep["validated"] is False and "kv-cache-dtype" in rep["error"]
