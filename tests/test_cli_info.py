"""`afmask info` names the version, every backend with its state, the choice and why, devices and kernel paths."""

import afmask
from afmask.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"afmask {afmask.__version__}" in out
    for name in ("arrayfire", "numpy", "cupy"):
        assert f"  {name}" in out
    assert "chosen backend: " in out and "automatic" in out or "AFMASK_BACKEND" in out
    assert "numpy      CPU" in out
    assert "the experiment loop uses: " in out
    for path in ("loop", "expr", "ext", "opencl", "cuda", "arrayfire"):
        assert f"  {path:<10}" in out


def test_info_names_the_opencl_platform_and_device(capsys):
    from afmask import kernels

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("  opencl "))
    if kernels.path_status()["opencl"] == "available":
        info = kernels.opencl_info()
        assert info["platform"] in line and info["device"] in line
    else:
        assert "available" not in line.split()[1]
