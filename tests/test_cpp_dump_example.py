"""csrc/afmask_dump.h compiled for real: a C++ program writes an iteration with ArrayFire, `afmask regress` replays it.

Built where ArrayFire's headers and library are found (AF_PATH, else /opt/arrayfire, /usr/local,
/usr); skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from afmask.cli import main

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
#: ArrayFire's libraries, the unified one first (it picks CUDA, OpenCL or CPU at run time).
LIBS = ("af", "afcpu", "afopencl", "afcuda")


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        pytest.skip("no C++ compiler (g++, c++ or clang++) on PATH")
    return cxx


def _roots() -> list[Path]:
    roots = [Path(os.environ["AF_PATH"])] if os.environ.get("AF_PATH") else []
    return roots + [Path("/opt/arrayfire"), Path("/usr/local"), Path("/usr")]


def find_arrayfire_headers() -> Path:
    """The include dir holding arrayfire.h, or a skip saying where it looked."""
    for root in _roots():
        if (root / "include" / "arrayfire.h").exists():
            return root / "include"
    pytest.skip(f"ArrayFire headers not found (arrayfire.h under {', '.join(str(r / 'include') for r in _roots())}); "
                "set AF_PATH to an ArrayFire install")


def _skip_unless_loadable(library: Path) -> None:
    """Skip, with the loader's message, where an install's library cannot load (say, a dependency it lacks)."""
    # a separate process, so that a library that does load stays out of the test session
    probe = subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])", str(library)],
                           capture_output=True, text=True, timeout=120, check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        pytest.skip(f"ArrayFire install at {library.parent} is incomplete, {library.name} does not load: {reason}")


def find_arrayfire() -> tuple[Path, Path, str]:
    """(include dir, library dir, library name) of an ArrayFire install, or a skip saying where it looked."""
    roots = _roots()
    for root in roots:
        inc = root / "include"
        if not (inc / "arrayfire.h").exists():
            continue
        for libdir in (root / "lib64", root / "lib", root / "lib" / "x86_64-linux-gnu"):
            for name in LIBS:
                found = sorted(libdir.glob(f"lib{name}.so*")) + sorted(libdir.glob(f"lib{name}.dylib"))
                if found:
                    _skip_unless_loadable(found[0])
                    return inc, libdir, name
    pytest.skip(f"ArrayFire headers and library not found (arrayfire.h and lib{{af,afcpu,...}}.so under "
                f"{', '.join(map(str, roots))}); set AF_PATH to an ArrayFire install")


@pytest.mark.parametrize("source", ["header", "dump_example"])
def test_dump_header_and_example_are_valid_cpp(tmp_path, source):
    """A syntax check against ArrayFire's own headers (no library needed)."""
    inc = find_arrayfire_headers()
    src = tmp_path / "check.cpp"
    src.write_text('#include "afmask_dump.h"\nint main() { afmask::IterationDump d; (void)d; return 0; }\n')
    if source == "dump_example":
        src = CSRC / "tools" / "dump_example.cpp"
    proc = subprocess.run([_compiler(), "-std=c++14", "-fsyntax-only", "-Wall", "-Wextra", f"-I{CSRC}", f"-I{inc}", str(src)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr


def test_cpp_program_writes_a_dump_that_regresses_clean(tmp_path, capsys):
    inc, libdir, lib = find_arrayfire()
    exe = tmp_path / "dump_example"
    cmd = [_compiler(), "-std=c++14", "-O2", f"-I{CSRC}", f"-I{inc}", str(CSRC / "tools" / "dump_example.cpp"),
           f"-L{libdir}", f"-l{lib}", f"-Wl,-rpath,{libdir}", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, LD_LIBRARY_PATH=f"{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    run = subprocess.run([str(exe), str(out), "60", "3"], capture_output=True, text=True, timeout=300, env=env, check=False)
    assert run.returncode == 0, run.stderr
    for name in ("dump.af", "params.af", "linear.arch"):
        assert (out / name).is_file(), name
    rc = main(["regress", str(out / "dump.af"), "--arch", str(out / "linear.arch"), "--params", str(out / "params.af")])
    report = capsys.readouterr().out
    assert rc == 0, report
    for key in ("input", "output", "pre_output", "f_loss", "loss"):
        assert any(line.startswith(key + " ") and line.rstrip().endswith("pass") for line in report.splitlines()), report
    assert "PASS" in report
