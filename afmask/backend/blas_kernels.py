"""Which kernels NumPy's OpenBLAS runs, and whether the environment held it below what the CPU can do.

OpenBLAS picks its kernels once, when it loads: from the CPU it detects, or from ``OPENBLAS_CORETYPE``. afmask
never changes that variable (whoever set it may want the same bits on every machine), but it says when it costs
speed: on this project's 2-core AMD EPYC (Zen 5, AVX-512) the environment sets ``OPENBLAS_CORETYPE=Haswell``, and
there a 1593 x 256 x 256 SGEMM runs at 126 GFLOP/s on one thread against 242 with the SkylakeX kernels OpenBLAS
picks by itself; PyTorch's own kernels use AVX-512 either way.
"""

from __future__ import annotations

import os
from typing import Optional

ENV = "OPENBLAS_CORETYPE"
#: The AVX-512 subsets OpenBLAS's SkylakeX kernels use.
AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
#: OpenBLAS core types whose single-precision kernels are AVX2 at most (the x86-64 ones, lower case).
BELOW_AVX512 = frozenset({"haswell", "zen", "sandybridge", "nehalem", "core2", "penryn", "dunnington", "prescott",
                          "atom", "barcelona", "bulldozer", "piledriver", "steamroller", "excavator", "bobcat"})


def cpu_flags(cpuinfo: Optional[str] = None) -> frozenset:
    """The flags of the first CPU in ``/proc/cpuinfo`` (or the given text); empty where there is none."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(1 << 16)
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def held_back(environ: Optional[dict] = None, cpuinfo: Optional[str] = None) -> Optional[str]:
    """Words for ``afmask info`` and the benchmarks where ``OPENBLAS_CORETYPE`` names AVX2 (or older) kernels on a
    CPU with AVX-512; None otherwise."""
    value = (os.environ if environ is None else environ).get(ENV, "")
    if value.strip().lower() not in BELOW_AVX512 or not AVX512_FLAGS <= cpu_flags(cpuinfo):
        return None
    return (f"{ENV}={value} in the environment holds NumPy's OpenBLAS to AVX2 kernels on this CPU with AVX-512 "
            f"(about half their GEMM speed here; PyTorch uses AVX-512 either way); unset it to let OpenBLAS choose")
