"""The CPU type NumPy's OpenBLAS detected is handed to a later OpenBLAS (ArrayFire's), unless the user set one."""

import os

import pytest
from afmask.backend import threads


def _numpy_arch():
    arch = threads.numpy_blas_architecture()
    if not arch:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS that reports its CPU type (threadpoolctl)")
    return arch


def test_the_detected_core_type_is_handed_on(monkeypatch):
    arch = _numpy_arch()
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(threads, "coretype_note", None)
    note = threads.share_blas_coretype()
    assert os.environ["OPENBLAS_CORETYPE"] == arch
    assert note == threads.coretype_note and f"OPENBLAS_CORETYPE={arch}" in note


def test_a_core_type_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(threads, "coretype_note", None)
    assert threads.share_blas_coretype() is None
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell" and threads.coretype_note is None


def test_arrayfire_runs_keep_one_blas_thread(monkeypatch):
    """ArrayFire's results change with the BLAS thread count: afmask keeps one there, so resumed runs are exact."""
    from afmask.backend import probe, use_backend

    found = probe("arrayfire")
    if not found.available:
        pytest.skip(found.reason)
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    before = threads.current()
    try:
        with use_backend("arrayfire"):
            choice = threads.configure()
        assert choice.threads == 1 and "ArrayFire" in choice.reason and choice.measured_ms is None
    finally:
        threads._apply(before.threads)
        threads._choice = before


def test_a_measured_choice_of_more_threads_drops_to_one_for_arrayfire(monkeypatch):
    """A count measured earlier in the process for NumPy is not used for ArrayFire, whose results depend on it."""
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    before = threads.current()
    try:
        threads._choice = threads.ThreadChoice(2, "measured (test)", {1: 1.0, 2: 0.5})
        assert threads.ensure("numpy") == 2
        assert threads.ensure("arrayfire") == 1 and "ArrayFire" in threads.current().reason
        threads._choice = threads.ThreadChoice(2, "set by --threads")
        assert threads.ensure("arrayfire") == 2  # the user's count stands
    finally:
        threads._apply(before.threads)
        threads._choice = before


AVX512_CPU = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl\n"
AVX2_CPU = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_avx2_kernels_forced_on_an_avx512_cpu_are_reported():
    from afmask.backend import blas_kernels

    words = blas_kernels.held_back({"OPENBLAS_CORETYPE": "Haswell"}, AVX512_CPU)
    assert words is not None and "OPENBLAS_CORETYPE=Haswell" in words and "unset it" in words
    assert blas_kernels.held_back({"OPENBLAS_CORETYPE": "zen"}, AVX512_CPU) is not None  # OpenBLAS ignores case
    # nothing to say: AVX-512 kernels asked for, no variable, or a CPU without AVX-512
    assert blas_kernels.held_back({"OPENBLAS_CORETYPE": "SkylakeX"}, AVX512_CPU) is None
    assert blas_kernels.held_back({}, AVX512_CPU) is None
    assert blas_kernels.held_back({"OPENBLAS_CORETYPE": "Haswell"}, AVX2_CPU) is None
    assert blas_kernels.cpu_flags("no flags here") == frozenset()


def test_afmask_info_names_numpys_blas_kernels(capsys):
    from afmask.cli import main

    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("blas kernels:"))
    arch = threads.numpy_blas_architecture()
    assert f"runs {arch or 'unknown'} kernels" in line
