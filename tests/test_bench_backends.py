"""`afmask bench backends`: every backend that loads timed in one run; the others named with the reason."""

from afmask.backend import NAMES, probe
from afmask.cli import main


def test_bench_backends_reports_every_backend(capsys):
    assert main(["bench", "backends", "--frames", "24", "--repeats", "2", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in NAMES:
        if probe(name).available:
            row = next(ln for ln in lines if ln.startswith(name + " "))
            assert "ms" in row
        else:
            assert f"not run: {name}: {name} backend:" in out
    numpy_row = next(ln for ln in lines if ln.startswith("numpy "))
    assert " 1.00x " in numpy_row and "none (host)" in numpy_row  # NumPy's noise needs no copy
    assert lines[-1].startswith("arrayfire_vs_numpy=") and " cupy_vs_numpy=" in lines[-1]
