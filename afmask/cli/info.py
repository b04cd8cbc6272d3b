"""``afmask info``: version, backends found, the one chosen and why, devices, and the fused-kernel paths."""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

import afmask
from afmask import backend as backends


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` sub-command."""
    p = sub.add_parser("info", help="show the version, backends, devices and kernel paths")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print what afmask finds on this machine."""
    from afmask.kernels import mask_step

    print(f"afmask {afmask.__version__} (Python {platform.python_version()}, numpy {np.__version__}, {platform.platform()})")
    print("backends:")
    for name in backends.NAMES:
        p = backends.probe(name)
        print(f"  {name:<10} {'found' if p.available else 'not available: ' + p.reason}")
    chosen = backends.get_backend()
    print(f"chosen backend: {chosen.name} ({backends.choice_reason()})")
    print("devices:")
    for name in backends.NAMES:
        if backends.probe(name).available:
            info = backends.get_backend(name).device_info()
            print(f"  {name:<10} {info.device}" + (f" [{info.detail}]" if info.detail else ""))
    from afmask.backend import threads

    tc = threads.current()
    measured = "" if not tc.measured_ms else " (" + ", ".join(f"{n} thread(s) {ms:.2f} ms" for n, ms in tc.measured_ms.items()) + ")"
    print(f"threads: {tc.threads} for BLAS and OpenMP, {threads.usable_cores()} usable core(s); {tc.reason}{measured}; "
          f"--threads N or {threads.THREADS_ENV} sets them"
          + ("" if tc.by_user or tc.fixed else "; a mask run then measures its own iterations with 1 and every core and keeps "
             "the faster"))
    from afmask.backend import blas_kernels

    print(f"blas kernels: NumPy's OpenBLAS runs {threads.numpy_blas_architecture() or 'unknown'} kernels"
          + (f" ({blas_kernels.ENV}={os.environ[blas_kernels.ENV]})"
             if os.environ.get(blas_kernels.ENV) and not threads.coretype_note else " (its own choice)"))
    for words in (blas_kernels.held_back(), threads.coretype_note):
        if words:
            print(f"  {words}")
    print("fused mask-step paths:")
    ext = mask_step.extension_info()
    for path, state in mask_step.path_status().items():
        detail = ""
        if path == "ext" and ext is not None:
            detail = f" (SIMD {ext['simd']}, OpenMP {'on' if ext['openmp'] else 'off'}, {ext['threads']} thread(s); the same choice)"
        if path == "opencl" and state == "available":
            cl = mask_step.opencl_info()
            detail = f" (OpenCL platform {cl['platform']}, device {cl['device']}, {cl['version']}; PYOPENCL_CTX picks another)"
        print(f"  {path:<10} {state.splitlines()[0]}{detail}")
    try:
        best = mask_step.best_path(chosen.name)
        print(f"the experiment loop uses: {best} (fastest correct path for {chosen.name} arrays)")
    except RuntimeError as exc:
        print(f"the experiment loop uses: array expressions ({exc})")
    try:
        from afmask.model import demo_paths

        arch, params = demo_paths()
        print(f"demo model: {arch.parent}")
    except Exception as exc:  # the demo model is optional package data
        print(f"demo model: not available ({exc})")
    return 0
