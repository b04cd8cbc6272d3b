"""The fused mask step in OpenCL C (``mask_step.cl``) through pyopencl: the ``opencl`` path.

It takes the same NumPy arrays as the ``ext`` path (float32, Fortran order) and
keeps its contract: ``mag``/``mgrad`` written into ``out`` when given, ``m``
updated in place. The arrays are copied to the OpenCL device and the results
back on every call (on a CPU OpenCL implementation such as pocl that is a
memory copy; on a GPU it is a PCIe transfer, which ``afmask bench kernel``
includes in the figure).

The device: ``PYOPENCL_CTX`` (pyopencl's own setting, e.g. ``0:0``) if set,
else the first GPU of any platform, else the first device. It must support
double precision (``cl_khr_fp64``): the sums of squares accumulate in double,
as on the other paths.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

#: The OpenCL C source shipped with the package.
OPENCL_SOURCE = Path(__file__).with_name("mask_step.cl")

#: sqrt and '/' IEEE-rounded, as on the CPU (OpenCL allows 3 ulp for float otherwise).
OPENCL_OPTIONS = ("-cl-fp32-correctly-rounded-divide-sqrt",)

_LOCAL = 64  # work-group size: a power of two, as the kernels' reduction needs


class _Device:
    """A context, a queue, the built program and reusable buffers on one OpenCL device."""

    def __init__(self, cl: Any, device: Any):
        self.cl, self.device = cl, device
        self.ctx = cl.Context([device])
        self.queue = cl.CommandQueue(self.ctx)
        self.program = cl.Program(self.ctx, OPENCL_SOURCE.read_text(encoding="utf-8")).build(options=list(OPENCL_OPTIONS))
        self.fwd = cl.Kernel(self.program, "afmask_forward")
        self.bwd = cl.Kernel(self.program, "afmask_backward")
        self.local = _LOCAL
        for k in (self.fwd, self.bwd):
            most = k.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, device)
            while self.local > most:
                self.local //= 2
        self._buffers: dict[str, Any] = {}

    def buffer(self, name: str, nbytes: int) -> Any:
        """A device buffer of at least nbytes, reused across calls (one per argument name)."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < nbytes:
            buf = self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, size=max(int(nbytes), 8))
            self._buffers[name] = buf
        return buf

    def groups(self, n: int) -> int:
        # enough groups to fill the device, few enough that the partial sums stay small
        return max(1, min((n + self.local - 1) // self.local, self.device.max_compute_units * 16))


def _pick_device(cl: Any) -> Any:
    if os.environ.get("PYOPENCL_CTX", "").strip():
        return cl.create_some_context(interactive=False).devices[0]
    devices = [d for p in cl.get_platforms() for d in p.get_devices()]
    if not devices:
        raise RuntimeError("no OpenCL device found (no platform lists one)")
    gpus = [d for d in devices if d.type & cl.device_type.GPU]
    return (gpus or devices)[0]


@functools.cache
def _device_or_reason() -> tuple[Any, str]:
    try:
        import pyopencl as cl
    except ImportError as exc:
        return None, f"pyopencl is not installed ({exc}); `pip install afmask[opencl]` and an OpenCL driver (e.g. pocl-opencl-icd)"
    try:
        device = _pick_device(cl)
    except Exception as exc:  # no ICD loader, no platform, a bad PYOPENCL_CTX
        return None, f"no usable OpenCL device ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
    if "cl_khr_fp64" not in device.extensions:
        return None, f"OpenCL device {device.name!r} has no double precision (cl_khr_fp64), which the sums need"
    try:
        return _Device(cl, device), ""
    except Exception as exc:
        return None, f"building {OPENCL_SOURCE.name} for {device.name!r} failed ({type(exc).__name__}: {exc})"


def status() -> str:
    """'available', or why the opencl path does not run here."""
    dev, reason = _device_or_reason()
    return "available" if dev is not None else reason


def info() -> dict | None:
    """The OpenCL platform and device the path runs on (None if unavailable)."""
    dev, _ = _device_or_reason()
    if dev is None:
        return None
    d = dev.device
    return {"platform": d.platform.name.strip(), "device": d.name.strip(), "version": d.version.strip(),
            "compute_units": int(d.max_compute_units), "work_group": dev.local}


def _dev() -> _Device:
    dev, reason = _device_or_reason()
    if dev is None:
        raise RuntimeError(f"path 'opencl' unavailable: {reason}")
    return dev


def _flat(a: np.ndarray) -> np.ndarray:
    """The memory of a Fortran-contiguous array as a 1-D view (no copy)."""
    return a.reshape(-1, order="F")


def _upload(dev: _Device, name: str, a: np.ndarray) -> Any:
    buf = dev.buffer(name, a.nbytes)
    dev.cl.enqueue_copy(dev.queue, buf, _flat(a), is_blocking=False)
    return buf


def forward(x: np.ndarray, eps: np.ndarray, m: np.ndarray, mag: np.ndarray, K: int, T: int, S: int) -> int:
    """mag <- |x + eps*m| (arguments checked by the caller); returns the count of non-finite magnitudes."""
    dev = _dev()
    cl = dev.cl
    n = K * T * S
    if n >= 2**32:
        raise ValueError(f"opencl path: K*T*S = {n} pairs exceeds the kernel's 32-bit index range")
    groups = dev.groups(n)
    bx, be, bm = _upload(dev, "x", x), _upload(dev, "eps", eps), _upload(dev, "m", m)
    bmag, bpart = dev.buffer("mag", mag.nbytes), dev.buffer("part", 8 * 3 * groups)
    dev.fwd.set_args(bx, be, bm, bmag, np.uint32(n), np.uint32(K * T), bpart, cl.LocalMemory(8 * dev.local))
    cl.enqueue_nd_range_kernel(dev.queue, dev.fwd, (groups * dev.local,), (dev.local,))
    part = np.empty(groups, np.float64)
    cl.enqueue_copy(dev.queue, _flat(mag), bmag, is_blocking=False)
    cl.enqueue_copy(dev.queue, part, bpart, is_blocking=True)
    return int(part.sum())


def backward(
    xgrad: np.ndarray, x: np.ndarray, eps: np.ndarray, m: np.ndarray, mgrad: np.ndarray,
    K: int, T: int, S: int, coef: float, lr: float | None,
) -> tuple[float, float, int]:
    """mgrad (and m in place if lr is given), as the CUDA kernel; returns (||m||^2, ||mgrad||^2, non-finite count)."""
    dev = _dev()
    cl = dev.cl
    if K * T * S >= 2**32:
        raise ValueError(f"opencl path: K*T*S = {K * T * S} pairs exceeds the kernel's 32-bit index range")
    groups = dev.groups(K * T)
    bg, bx, be, bm = (_upload(dev, n, a) for n, a in (("xgrad", xgrad), ("x", x), ("eps", eps), ("m", m)))
    bmg, bpart = dev.buffer("mgrad", mgrad.nbytes), dev.buffer("part", 8 * 3 * groups)
    dev.bwd.set_args(bg, bx, be, bm, bmg, np.uint32(K * T), np.uint32(S), np.float64(coef),
                     np.float32(0.0 if lr is None else lr), np.int32(lr is not None), bpart,
                     cl.LocalMemory(8 * dev.local))
    cl.enqueue_nd_range_kernel(dev.queue, dev.bwd, (groups * dev.local,), (dev.local,))
    part = np.empty(3 * groups, np.float64)
    cl.enqueue_copy(dev.queue, _flat(mgrad), bmg, is_blocking=False)
    if lr is not None:
        cl.enqueue_copy(dev.queue, _flat(m), bm, is_blocking=False)
    cl.enqueue_copy(dev.queue, part, bpart, is_blocking=True)
    sums = part.reshape(3, groups).sum(axis=1)
    return float(sums[0]), float(sums[1]), int(sums[2])
