"""Provider registry: which implementation runs each op.

A provider is one module ``rocm_dsa.backends.<name>`` exposing ``PROVIDER`` (a
:class:`Provider`). Modules are imported on first use, so ``import rocm_dsa`` works on a machine
without any vendor library; a provider that cannot load says why instead of failing.

Selection for one call (``select``): explicit ``provider=`` argument > environment
(``ROCM_DSA_BACKEND_<OP>``, then ``ROCM_DSA_BACKEND``) > the platform's priority list
(``PRIORITY``). An explicit or environment choice that cannot serve the case raises
:class:`ProviderError` listing why; the automatic choice takes the first provider that can and
raises (listing every provider's reasons) when none can. :func:`prefer` makes one provider
the first automatic choice inside a ``with`` block, falling back with a logged reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..platform import detect

__all__ = [
    "OPS",
    "PROVIDER_MODULES",
    "PRIORITY",
    "Case",
    "Provider",
    "ProviderError",
    "get_provider",
    "provider_names",
    "select",
    "prefer",
    "record_selections",
]

log = logging.getLogger("rocm_dsa")

OPS: tuple[str, ...] = (
    "indexer_logits",
    "indexer_logits_paged",
    "topk_indices",
    "indexer_topk",
    "indexer_topk_paged",
    "sparse_mla_prefill",
    "sparse_mla_decode",
    "store_indexer_k",
    "store_mla_kv",
)

#: name -> module; a provider exists once its module does.
PROVIDER_MODULES: dict[str, str] = {
    "reference": "rocm_dsa.backends.reference",
    "triton": "rocm_dsa.backends.triton",
    "hip": "rocm_dsa.backends.hip",
    "aiter": "rocm_dsa.backends.aiter",
    "flashmla": "rocm_dsa.backends.flashmla",
    "deepgemm": "rocm_dsa.backends.deepgemm",
}

#: automatic choice per vendor, first that supports the case wins.
PRIORITY: dict[str, tuple[str, ...]] = {
    "amd": ("hip", "triton", "aiter", "reference"),
    "nvidia": ("flashmla", "deepgemm", "hip", "triton", "reference"),
    "cpu": ("reference",),
}


class ProviderError(RuntimeError):
    """No provider can run a call; the message lists each candidate's reasons."""


@dataclasses.dataclass(frozen=True)
class Case:
    """What a provider needs to know to accept one call (metadata only, no tensor data).

    Attributes:
        op: one of :data:`OPS`.
        device: "cpu" or "cuda" (ROCm devices are "cuda" in torch).
        arch: platform arch ("gfx942", "gfx950", "sm90", "cpu", ...).
        dtypes: dtype of the main operands, by argument name.
        heads: head count of the call (None where heads do not apply).
        extra: op-specific facts (page size, next_n, topk, kv format ...).
    """

    op: str
    device: str
    arch: str
    dtypes: tuple[tuple[str, torch.dtype], ...] = ()
    heads: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def dtype(self, name: str) -> torch.dtype | None:
        return dict(self.dtypes).get(name)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.extra).get(name, default)


class Provider:
    """Base class of one provider. Subclasses set the class attributes and implement the ops as
    methods with the op's name, taking the validated arguments of ``rocm_dsa.ops``.

    Attributes:
        name: registry name.
        ops: op names implemented.
        devices: torch device types it runs on.
        archs: archs it runs on (None = any arch of those devices).
        heads: head counts accepted (None = any).
        description: one line for ``rocm-dsa check``.
    """

    name: str = ""
    ops: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    archs: frozenset[str] | None = None
    heads: frozenset[int] | None = None
    description: str = ""

    def unavailable_reason(self) -> str | None:
        """Why the provider cannot run on this machine at all (None = it can). Cheap, cached."""
        return None

    def case_reasons(self, case: Case) -> list[str]:
        """Provider-specific reasons to refuse a case (dtype, shapes ...); [] = accepted."""
        return []

    def supports(self, case: Case) -> list[str]:
        """All reasons this provider cannot run ``case``; an empty list means it can."""
        if case.op not in self.ops:
            return [f"does not implement {case.op}"]
        why = self.unavailable_reason()
        if why:
            return [why]
        reasons = []
        if case.device not in self.devices:
            reasons.append(f"runs on {sorted(self.devices)}, not {case.device}")
        if self.archs is not None and case.arch not in self.archs:
            reasons.append(f"supports archs {sorted(self.archs)}, not {case.arch}")
        if self.heads is not None and case.heads is not None and case.heads not in self.heads:
            reasons.append(f"supports heads {sorted(self.heads)}, not {case.heads}")
        return reasons + self.case_reasons(case)

    def get(self, op: str) -> Callable[..., Any]:
        return getattr(self, op)


class _Missing(Provider):
    def __init__(self, name: str, why: str):
        self.name = name
        self.ops = frozenset(OPS)
        self._why = why

    def unavailable_reason(self) -> str | None:
        return self._why


_loaded: dict[str, Provider] = {}
_preferred: contextvars.ContextVar[str | None] = contextvars.ContextVar("rocm_dsa_preferred", default=None)
_recorder: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("rocm_dsa_recorder",
                                                                                  default=None)


def provider_names() -> list[str]:
    """Every registered provider name (available or not)."""
    return list(PROVIDER_MODULES)


def get_provider(name: str) -> Provider:
    """The provider called ``name``, importing its module on first use.

    A module that is missing or fails to import gives a provider whose ``unavailable_reason``
    carries the import error. Raises ValueError for a name not in :data:`PROVIDER_MODULES`.
    """
    if name not in PROVIDER_MODULES:
        raise ValueError(f"provider: expected one of {provider_names()}, got {name!r}")
    p = _loaded.get(name)
    if p is None:
        try:
            p = importlib.import_module(PROVIDER_MODULES[name]).PROVIDER
        except ModuleNotFoundError as e:
            if e.name == PROVIDER_MODULES[name]:
                p = _Missing(name, "not implemented in this version of rocm-dsa")
            else:
                p = _Missing(name, f"cannot import {e.name!r} ({e})")
        except Exception as e:  # noqa: BLE001 - a broken vendor library must not break rocm_dsa
            p = _Missing(name, f"failed to load: {type(e).__name__}: {e}")
        _loaded[name] = p
    return p


def make_case(op: str, device: torch.device, *, heads: int | None = None,
              dtypes: dict[str, torch.dtype] | None = None, **extra: Any) -> Case:
    """Build a :class:`Case` for ``op`` on ``device`` (the arch is detected from the device)."""
    arch = detect(device).arch
    return Case(op, device.type, arch, tuple((dtypes or {}).items()), heads, tuple(extra.items()))


def _env_choice(op: str) -> tuple[str | None, str | None]:
    for var in (f"ROCM_DSA_BACKEND_{op.upper()}", "ROCM_DSA_BACKEND"):
        v = os.environ.get(var)
        if v:
            return v.strip(), var
    return None, None


def select(case: Case, provider: str | None = None) -> Provider:
    """Choose the provider for one call (rules in the module docstring).

    Raises:
        ValueError: an unknown provider name (argument or environment).
        ProviderError: the requested provider cannot serve the case, or none can.
    """
    source = "provider argument"
    if provider is None:
        provider, source = _env_choice(case.op)
    if provider is not None and provider != "auto":
        p = get_provider(provider)
        why = p.supports(case)
        if why:
            raise ProviderError(
                f"provider {provider!r} (from {source}) cannot run {case.op} "
                f"on {case.arch} (heads={case.heads}): {'; '.join(why)}"
            )
        return _record(case, p)
    order = list(PRIORITY.get(detect_vendor(case), ("reference",)))
    pref = _preferred.get()
    if pref is not None:
        order = [pref] + [n for n in order if n != pref]
    reasons: dict[str, list[str]] = {}
    for name in order:
        p = get_provider(name)
        why = p.supports(case)
        if not why:
            if pref is not None and name != pref:
                log.info("rocm_dsa: %s falls back from %s to %s: %s", case.op, pref, name,
                         "; ".join(reasons.get(pref, [])))
            return _record(case, p)
        reasons[name] = why
    detail = "; ".join(f"{n}: {', '.join(r)}" for n, r in reasons.items())
    raise ProviderError(f"no provider can run {case.op} on {case.arch} (heads={case.heads}): {detail}")


def _record(case: Case, p: Provider) -> Provider:
    rec = _recorder.get()
    if rec is not None:
        rec[case.op] = p.name
    return p


@contextlib.contextmanager
def record_selections() -> Iterator[dict[str, str]]:
    """Within the block, collect ``op -> provider name`` for every op dispatched (last call
    wins), so callers can report which provider actually ran each op."""
    rec: dict[str, str] = {}
    token = _recorder.set(rec)
    try:
        yield rec
    finally:
        _recorder.reset(token)


def detect_vendor(case: Case) -> str:
    if case.device == "cpu":
        return "cpu"
    return "amd" if case.arch.startswith("gfx") else "nvidia"


@contextlib.contextmanager
def prefer(name: str | None) -> Iterator[None]:
    """Within the block, try provider ``name`` first for automatic choices; ops it cannot run
    fall back to the platform's priority list with the reason logged (logger ``rocm_dsa``).
    ``None`` changes nothing. Raises ValueError for an unknown name."""
    if name is not None and name not in PROVIDER_MODULES:
        raise ValueError(f"provider: expected one of {provider_names()}, got {name!r}")
    token = _preferred.set(name)
    try:
        yield
    finally:
        _preferred.reset(token)
