"""afmask's thread choice follows the load: measured at the start, measured again when old or when a core turns busy."""

import pytest

from afmask.backend import threads


@pytest.fixture()
def restore():
    saved = (threads._choice, threads._measured_at)
    yield
    threads._choice, threads._measured_at = saved
    threads._apply(saved[0].threads if saved[0] is not None else 1)


def _measured(monkeypatch, ms):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_current_backend", lambda: "numpy")
    monkeypatch.setattr(threads, "measure", lambda cores: dict(ms))


def test_a_busy_core_makes_the_next_recheck_measure_again_and_take_one_thread(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    assert threads.configure().threads == 2
    monkeypatch.setattr(threads, "_probe_ms", lambda: 0.6)  # within the slowdown allowed: kept, not measured
    assert threads.recheck().threads == 2
    # the other core turns busy: the calibration GEMM slows down past PROBE_SLOWDOWN, two threads now lose
    monkeypatch.setattr(threads, "_probe_ms", lambda: 0.5 * threads.PROBE_SLOWDOWN * 1.2)
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    c = threads.recheck()
    assert c.threads == 1 and "busy core" in c.reason


def test_a_measured_choice_is_measured_again_when_old_both_ways(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    assert threads.configure().threads == 1
    assert threads.recheck().threads == 1  # one thread is not probed
    monkeypatch.setattr(threads, "_measured_at", threads._measured_at - threads.RECHECK_SECONDS - 1)
    _measured(monkeypatch, {1: 1.0, 2: 0.5})  # the load went away
    assert threads.recheck().threads == 2


def test_a_choice_the_user_made_is_never_measured(monkeypatch, restore):
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    c = threads.configure()
    assert c.threads == 1 and c.measured_ms is None
    monkeypatch.setattr(threads, "measure", lambda cores: pytest.fail("measured a thread count the user set"))
    monkeypatch.setattr(threads, "_measured_at", -1e9)
    assert threads.recheck() is c
