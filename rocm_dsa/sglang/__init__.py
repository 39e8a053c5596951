"""SGLang integration: the ``nsa-rocm`` attention backend, its plugin and serving helpers.

Modules:

* :mod:`rocm_dsa.sglang.plugin` -- ``register()``, the ``sglang.srt.plugins`` entry point. Cheap,
  never raises; imports nothing heavy (SGLang's registries are filled when SGLang imports them).
* :mod:`rocm_dsa.sglang.backend` -- :class:`RocmDSABackend`, a subclass of SGLang's
  ``DeepseekSparseAttnBackend`` that runs the indexer, top-k, sparse MLA and cache writes
  through :mod:`rocm_dsa.ops`. Imports SGLang; only SGLang's model runner loads it.
* :mod:`rocm_dsa.sglang.serve_args` -- the ``rocm-dsa serve`` argument builder (no SGLang
  import; validation through SGLang's parser when it is installed).

Importing this package needs neither SGLang nor a GPU.
"""

from __future__ import annotations

import importlib.util

__all__ = ["BACKEND_NAME", "INSTALL_HINT", "SGLANG_VERSION", "sglang_available"]

#: the ``--attention-backend`` choice this package adds to SGLang
BACKEND_NAME = "nsa-rocm"

#: the SGLang release the integration is written and tested against
SGLANG_VERSION = "0.5.23"

#: what to tell a user whose environment has no SGLang
INSTALL_HINT = (
    'SGLang is not installed. Install it with: pip install "rocm-dsa[sglang]" '
    f"(SGLang {SGLANG_VERSION}; on ROCm use a ROCm SGLang image, e.g. lmsysorg/sglang:*-rocm*)."
)


def sglang_available() -> bool:
    """True when the ``sglang`` package can be found (it is not imported).

    A directory named ``sglang`` without ``__init__.py`` on ``sys.path`` (a namespace package,
    e.g. a test folder) does not count.
    """
    try:
        spec = importlib.util.find_spec("sglang")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None
