"""Run a callback when a module is imported (now if it already is, else right after its body runs).

The plugin uses this to add ``nsa-rocm`` to SGLang's name registries without importing the
modules that hold them: the launcher never pays for importing model code, and a scheduler
process registers at the moment SGLang itself imports the registry. Python has no public
post-import hook; this is the usual meta-path finder that wraps the found loader's
``exec_module`` (the same technique as ``wrapt.when_imported``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

__all__ = ["when_imported"]

log = logging.getLogger("rocm_dsa.sglang")

_lock = threading.RLock()
_pending: dict[str, list[Callable[[ModuleType], None]]] = {}


def _run(callbacks: list[Callable[[ModuleType], None]], module: ModuleType) -> None:
    for cb in callbacks:
        try:
            cb(module)
        except Exception:  # noqa: BLE001 - a hook must never break SGLang's import
            log.exception("rocm_dsa: post-import hook %r on %s failed", cb, module.__name__)


class _LoaderProxy(importlib.abc.Loader):
    """Delegates to the real loader and runs the pending callbacks after ``exec_module``."""

    def __init__(self, loader: importlib.abc.Loader, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # the module keeps its real loader (inspect, importlib.resources, reload see no proxy)
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with _lock:
            callbacks = _pending.pop(self._name, [])
        _run(callbacks, module)

    def __getattr__(self, item):  # get_data, get_filename, is_package, ... of the real loader
        return getattr(self._loader, item)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _LoaderProxy(spec.loader, fullname)
                return spec
        return None


_finder = _Finder()


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once module ``name`` is imported.

    Runs at once when the module is already in ``sys.modules``; otherwise right after the
    module's body has executed. Exceptions from the callback are logged (logger
    ``rocm_dsa.sglang``), never raised into the importer.
    """
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(callback)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
            return
    _run([callback], module)
