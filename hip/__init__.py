"""C++ kernel sources of rocm-dsa (HIP, also compiled by nvcc), installed as ``rocm_dsa.hip_src``.

Package data only: ``*.hip`` kernels, ``dsa_port.h`` (the one portability header), the
launcher interface ``dsa_kernels.h`` and the torch binding ``dsa_ext.cpp``. Built on first use
by :func:`rocm_dsa.hipext.load`; compiled device-only for gfx942 / gfx950 by
:mod:`rocm_dsa.hipext.compile_report`.
"""
