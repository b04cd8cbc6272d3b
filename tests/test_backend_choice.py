"""The automatic backend choice never takes a backend several times slower than another one that loads."""

import pytest

from afmask.backend import Probe, automatic_choice

AF = Probe("arrayfire", True, "loaded")
NO_AF = Probe("arrayfire", False, "arrayfire backend: the arrayfire Python package is not installed")
CP = Probe("cupy", True, "loaded")
NO_CP = Probe("cupy", False, "cupy backend: no CUDA device found")


@pytest.mark.parametrize("active", ["cuda", "opencl", "CUDA"])
def test_arrayfire_on_a_gpu_is_taken(active):
    for cupy in (CP, NO_CP):
        name, reason = automatic_choice(AF, active, cupy)
        assert name == "arrayfire"
        assert active.upper() in reason and "automatic" in reason


def test_arrayfire_cpu_backend_is_not_taken():
    name, reason = automatic_choice(AF, "cpu", NO_CP)
    assert name == "numpy"
    assert "CPU" in reason and "AFMASK_BACKEND=arrayfire" in reason
    name, reason = automatic_choice(AF, "cpu", CP)
    assert name == "cupy" and "CPU backend" in reason


def test_without_arrayfire_cupy_then_numpy():
    assert automatic_choice(NO_AF, None, CP)[0] == "cupy"
    name, reason = automatic_choice(NO_AF, None, NO_CP)
    assert name == "numpy" and "not available" in reason


def test_the_choice_on_this_machine_follows_the_rule(monkeypatch):
    import afmask.backend as backends

    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.setattr(backends, "_current", None)
    chosen = backends.get_backend()
    af = backends.probe("arrayfire")
    active = backends.get_backend("arrayfire").active_backend() if af.available else None
    cp = backends.probe("cupy") if active not in backends.GPU_BACKENDS else NO_CP
    assert chosen.name == automatic_choice(af, active, cp)[0]
    assert backends.choice_reason().startswith("automatic")
