"""Post-import hooks the plugin uses to fill SGLang's registries lazily (no SGLang needed)."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest

from rocm_dsa.sglang._import_hooks import when_imported


@pytest.fixture
def pkg(tmp_path, monkeypatch):
    """A fresh package ``rdsa_hooktest_pkg`` with a submodule ``reg`` holding a registry list."""
    root = tmp_path / "rdsa_hooktest_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "reg.py").write_text("NAMES = ['a']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "rdsa_hooktest_pkg.reg"
    for name in ("rdsa_hooktest_pkg.reg", "rdsa_hooktest_pkg"):
        sys.modules.pop(name, None)


def test_runs_after_import_and_leaves_real_loader(pkg):
    seen = []
    when_imported(pkg, lambda m: (m.NAMES.append("nsa-rocm"), seen.append(m.__name__)))
    assert pkg not in sys.modules and not seen
    mod = importlib.import_module(pkg)
    assert seen == [pkg] and mod.NAMES == ["a", "nsa-rocm"]
    assert type(mod.__loader__).__name__ == "SourceFileLoader"
    assert mod.__spec__.loader is mod.__loader__
    importlib.reload(mod)   # a reload works and does not re-run the hook
    assert seen == [pkg] and mod.NAMES == ["a"]


def test_runs_at_once_when_already_imported(pkg):
    mod = importlib.import_module(pkg)
    when_imported(pkg, lambda m: m.NAMES.append("x"))
    assert mod.NAMES == ["a", "x"]


def test_callback_error_is_logged_not_raised(pkg, caplog):
    def boom(_):
        raise RuntimeError("registry moved")

    when_imported(pkg, boom)
    with caplog.at_level(logging.ERROR, logger="rocm_dsa.sglang"):
        mod = importlib.import_module(pkg)
    assert mod.NAMES == ["a"]
    assert "registry moved" in caplog.text
