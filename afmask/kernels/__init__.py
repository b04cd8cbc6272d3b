"""Fused kernels of the mask experiment (CPU extension, OpenCL, CUDA, ArrayFire) behind one API; see ``mask_step``."""

from afmask.kernels.mask_step import (
    CUDA_SOURCE,
    PATHS,
    NonFiniteError,
    StepResult,
    available_paths,
    backward,
    best_path,
    extension_info,
    forward,
    get_num_threads,
    opencl_info,
    path_status,
    per_bin_loop,
    set_num_threads,
)

__all__ = [
    "CUDA_SOURCE",
    "PATHS",
    "NonFiniteError",
    "StepResult",
    "available_paths",
    "backward",
    "best_path",
    "extension_info",
    "forward",
    "get_num_threads",
    "opencl_info",
    "path_status",
    "per_bin_loop",
    "set_num_threads",
]
