"""The ``--device`` option shared by the commands: parse it once, refuse a GPU torch cannot see."""

from __future__ import annotations

import torch
import typer


def parse_device(device: str | None) -> torch.device | None:
    """``None`` stays None (the command's default); otherwise a torch.device.

    Raises typer.BadParameter (exit 2, naming --device) for an unknown device string, or for
    "cuda" when this torch sees no CUDA/ROCm GPU (e.g. a CPU build).
    """
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise typer.BadParameter(str(e), param_hint="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter(f"{device!r}: this torch ({torch.__version__}) sees no CUDA/ROCm GPU",
                                 param_hint="--device")
    return dev
