"""C++ kernel sources of rocm-dsa (HIP, also compiled by nvcc), installed as ``rocm_dsa.hip_src``.

Package data only: ``*.hip`` kernels (top-k, cache stores, the MFMA paged indexer and sparse MLA
decode), ``dsa_port.h`` (the one portability header), ``mfma_layouts.h`` (MFMA fragment layouts
and instruction wrappers), the launcher interface ``dsa_kernels.h`` and the torch binding
``dsa_ext.cpp``. Built on first use
by :func:`rocm_dsa.hipext.load`; compiled device-only for gfx942 / gfx950 by
:mod:`rocm_dsa.hipext.compile_report`.
"""
