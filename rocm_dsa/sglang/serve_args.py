"""Build the SGLang server invocation of ``rocm-dsa serve`` (pure Python; SGLang optional).

:func:`build_plan` turns the serve options plus the user's pass-through arguments into the
argument list of ``python -m sglang.launch_server`` with ``--attention-backend nsa-rocm`` and
the MI300X defaults below, each of which the user overrides by passing the flag (any SGLang
spelling, ``--flag value`` or ``--flag=value``). :func:`validate` parses the result with
SGLang's own ``prepare_server_args`` when SGLang is importable. :func:`launch` starts the
server in this process, exactly as ``python -m sglang.launch_server`` does.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

from ..config import DSAConfig, deepseek_v32
from . import BACKEND_NAME, INSTALL_HINT, sglang_available

__all__ = [
    "MI300X_DEFAULTS",
    "ALIASES",
    "ServePlan",
    "build_plan",
    "find_flag",
    "validate",
    "launch",
]

#: SGLang flags ``rocm-dsa serve`` sets unless the user passes them, with the reason.
#: page size 64: the indexer key cache layout (DeepGEMM paged MQA logits, 64-token pages);
#: bf16 KV: exact latents (``--kv-cache-dtype fp8_e4m3`` selects rocm-dsa's 656-byte FP8
#: records, e4m3fnuz on gfx942); memory fraction 0.85 leaves room on a 192 GB MI300X for
#: kernel workspaces next to the weights and the KV pool.
MI300X_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("--page-size", "64"),
    ("--kv-cache-dtype", "bfloat16"),
    ("--mem-fraction-static", "0.85"),
)

#: canonical SGLang flag -> every spelling SGLang 0.5.23's parser accepts for it (checked
#: against SGLang's parser by the tests), plus ``--tp`` (argparse's abbreviation of --tp-size).
ALIASES: dict[str, tuple[str, ...]] = {
    "--model-path": ("--model-path", "--model"),
    "--tp-size": ("--tp-size", "--tensor-parallel-size", "--tp"),
    "--attention-backend": ("--attention-backend",),
    "--page-size": ("--page-size",),
    "--kv-cache-dtype": ("--kv-cache-dtype",),
    "--mem-fraction-static": ("--mem-fraction-static",),
}


@dataclasses.dataclass
class ServePlan:
    """A resolved SGLang invocation.

    Attributes:
        args: SGLang server arguments (``sys.argv[1:]`` of ``sglang.launch_server``).
        env: environment variables set for the server (provider choice), added to the caller's.
        defaults: the MI300X defaults that were applied (flag -> value); user-given ones absent.
        overridden: defaults the user overrode (flag -> the user's value).
    """

    args: list[str]
    env: dict[str, str]
    defaults: dict[str, str]
    overridden: dict[str, str]

    @property
    def command(self) -> list[str]:
        """``[python, -m, sglang.launch_server, *args]``."""
        return [sys.executable, "-m", "sglang.launch_server", *self.args]

    def shell(self) -> str:
        """The command as one shell line, environment assignments first."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "sglang.launch_server", *self.args])
        return f"{env} {cmd}" if env else cmd

    def to_json(self) -> dict:
        return {"command": self.command, "args": self.args, "env": self.env, "defaults": self.defaults,
                "overridden": self.overridden, "shell": self.shell()}


def find_flag(args: Sequence[str], canonical: str) -> tuple[int, str | None] | None:
    """Locate ``canonical`` (any spelling in :data:`ALIASES`) in ``args``.

    Returns (index, value) of the last occurrence -- value None when the flag is the last
    token -- or None when absent. ``--flag=value`` and ``--flag value`` are both understood.
    """
    spellings = ALIASES.get(canonical, (canonical,))
    found = None
    for i, a in enumerate(args):
        name, eq, val = a.partition("=")
        if name in spellings:
            if eq:
                found = (i, val)
            else:
                found = (i, args[i + 1] if i + 1 < len(args) else None)
    return found


def model_config(model: str) -> DSAConfig | None:
    """The DSA config of ``model`` when known without downloading: a local folder's
    ``config.json`` (read through :meth:`rocm_dsa.config.DSAConfig.from_json`), or the
    DeepSeek-V3.2 preset for a ``deepseek-ai/DeepSeek-V3.2*`` id; None otherwise (a non-DSA or
    unreadable config included: SGLang decides then)."""
    cfg_path = os.path.join(model, "config.json")
    if os.path.isfile(cfg_path):
        try:
            return DSAConfig.from_json(cfg_path)
        except (ValueError, OSError):
            return None
    if os.path.basename(model.rstrip("/")).lower().startswith("deepseek-v3.2"):
        return deepseek_v32()
    return None


def _check_tp_divides_heads(args: Sequence[str]) -> None:
    """ValueError (:meth:`DSAConfig.local_heads`) when --tp-size does not divide the model's
    attention heads (each TP rank gets num_heads / tp_size; DeepSeek-V3.2: 16 per rank at --tp 8)."""
    model, tp = find_flag(args, "--model-path"), find_flag(args, "--tp-size")
    if model is None or model[1] is None or tp is None or tp[1] is None:
        return
    try:
        tp_size = int(tp[1])
    except ValueError:
        return  # SGLang's parser reports it
    cfg = model_config(model[1])
    if cfg is not None and tp_size >= 1:
        try:
            cfg.local_heads(tp_size)
        except ValueError as e:
            raise ValueError(f"{e} (model {model[1]!r})") from None


def build_plan(
    extra: Sequence[str] = (),
    *,
    model_path: str | None = None,
    tp_size: int | None = None,
    provider: str | None = None,
    defaults: Sequence[tuple[str, str]] = MI300X_DEFAULTS,
    attention_backend: str = BACKEND_NAME,
) -> ServePlan:
    """Resolve the SGLang arguments of ``rocm-dsa serve``.

    Args:
        extra: arguments passed through to SGLang untouched (multi-node flags, ports, ...).
        model_path: ``--model-path``; may instead be given in ``extra`` (not both).
        tp_size: ``--tp-size``; may instead be given in ``extra`` as --tp/--tp-size (not both).
        provider: rocm-dsa provider for every op (sets ``ROCM_DSA_BACKEND``), None = automatic.
        defaults: flags added unless present in ``extra`` (:data:`MI300X_DEFAULTS`).
        attention_backend: added unless ``extra`` names one (then the user's wins).
    Returns:
        :class:`ServePlan`.
    Raises:
        ValueError: no model path, a flag given twice (option and pass-through), tp_size < 1,
            a tp_size that does not divide the model's attention heads (when they are known
            locally: :func:`model_config`), or an unknown provider name.
    """
    extra = list(extra)
    head: list[str] = []
    if model_path is not None:
        if find_flag(extra, "--model-path") is not None:
            raise ValueError("model_path: given both as --model-path and in the SGLang arguments")
        head += ["--model-path", model_path]
    elif find_flag(extra, "--model-path") is None:
        raise ValueError("model_path: --model-path is required (e.g. --model-path deepseek-ai/DeepSeek-V3.2)")
    if tp_size is not None:
        if tp_size < 1:
            raise ValueError(f"tp_size: expected >= 1, got {tp_size}")
        if find_flag(extra, "--tp-size") is not None:
            raise ValueError("tp_size: given both as --tp and in the SGLang arguments")
        head += ["--tp-size", str(tp_size)]
    # --tp is only argparse's abbreviation of --tp-size: spell it out for SGLang
    extra = ["--tp-size" + a[len("--tp"):] if a == "--tp" or a.startswith("--tp=") else a for a in extra]
    _check_tp_divides_heads(head + extra)
    if find_flag(extra, "--attention-backend") is None:
        head += ["--attention-backend", attention_backend]
    applied: dict[str, str] = {}
    overridden: dict[str, str] = {}
    for flag, value in defaults:
        hit = find_flag(extra, flag)
        if hit is None:
            head += [flag, value]
            applied[flag] = value
        else:
            overridden[flag] = hit[1] if hit[1] is not None else ""
    env: dict[str, str] = {}
    if provider is not None:
        from ..backends import provider_names

        if provider not in provider_names() and provider != "auto":
            raise ValueError(f"provider: expected one of {provider_names()} or 'auto', got {provider!r}")
        env["ROCM_DSA_BACKEND"] = provider
    return ServePlan(args=head + extra, env=env, defaults=applied, overridden=overridden)


def validate(plan: ServePlan):
    """Parse ``plan.args`` with SGLang's ``prepare_server_args`` after loading SGLang's plugins
    (and registering rocm-dsa's, in case its entry point is not installed).

    Returns SGLang's ``ServerArgs``. Raises ImportError (with the install hint) when SGLang is
    missing, ValueError with SGLang's message when SGLang rejects the arguments.
    """
    if not sglang_available():
        raise ImportError(INSTALL_HINT)
    import contextlib
    import io

    from sglang.srt.plugins import load_plugins
    from sglang.srt.server_args import prepare_server_args

    from .plugin import register

    load_plugins()
    register()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return prepare_server_args(list(plan.args))
    except SystemExit as e:  # argparse reports errors by exiting
        msg = err.getvalue().strip().splitlines()
        raise ValueError(f"SGLang rejected the arguments: {msg[-1] if msg else e}") from None


def launch(plan: ServePlan) -> None:
    """Start SGLang's server in this process with ``plan`` (``python -m sglang.launch_server``:
    plugins, argument parsing, HTTP server, schedulers). Returns when the server exits.

    Raises ImportError (with the install hint) when SGLang is missing.
    """
    if not sglang_available():
        raise ImportError(INSTALL_HINT)
    import runpy

    from .plugin import register

    os.environ.update(plan.env)  # inherited by SGLang's scheduler processes
    register()
    argv = sys.argv
    sys.argv = ["sglang.launch_server", *plan.args]
    try:
        runpy.run_module("sglang.launch_server", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = argv
