"""afmask's thread choice follows the work and the load: a GEMM at the start, then the mask loop's own steps, measured
again when old or when a step slows down (a core turned busy)."""

import pytest

from afmask.backend import threads


@pytest.fixture()
def restore():
    saved, apply = (threads._choice, threads._measured_at), threads._apply  # the real one: tests replace it
    yield
    threads._choice, threads._measured_at = saved
    apply(saved[0].threads if saved[0] is not None else 1)


def _measured(monkeypatch, ms):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_current_backend", lambda: "numpy")
    monkeypatch.setattr(threads, "measure", lambda cores: dict(ms))


def _loop(monkeypatch, step_seconds):
    """A StepThreads over steps whose time depends on the thread count in force: the counts each step ran with."""
    applied = []
    monkeypatch.setattr(threads, "_apply", lambda n: applied.append(n))
    tuner, ran = threads.StepThreads(), []
    for i in range(len(step_seconds)):
        tuner.before()
        n = applied[-1] if applied else threads.current().threads
        ran.append(n)
        tuner.after(step_seconds[i](n))
    return ran


def test_a_loop_keeps_the_thread_count_its_own_steps_measure_faster(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    assert threads.configure().threads == 2  # the GEMM says two
    # but the steps (a noise thread beside the GEMMs) are faster on one. The first two one-thread steps are slow
    # (workers still spinning): counted, they would make the median of four 0.3 and two threads win; the first
    # of each block is not counted, and the median of the other three is one thread's
    spin = iter([True, True])
    times = [lambda n: 1.0] * threads.WARMUP_STEPS + [lambda n: 0.10 if n == 1 and not next(spin, False) else
                                                     (0.13 if n == 2 else 0.5)] * 12
    ran = _loop(monkeypatch, times)
    b = threads.STEP_BLOCK
    w = threads.WARMUP_STEPS
    assert ran[w : w + 2 * b] == [1] * b + [2] * b
    assert ran[w + 2 * b :] == [1] * (len(ran) - w - 2 * b)
    c = threads.current()
    assert c.threads == 1 and "run's own iterations" in c.reason and c.measured_ms is not None


def test_a_loop_takes_more_threads_when_its_steps_are_clearly_faster(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    assert threads.configure().threads == 1
    ran = _loop(monkeypatch, [lambda n: 0.1 / n] * 14)
    assert ran[-3:] == [2, 2, 2] and threads.current().threads == 2
    # a gain under STEP_GAIN_NEEDED keeps one thread
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    threads.configure()
    ran = _loop(monkeypatch, [lambda n: 0.1 if n == 1 else 0.1 / (threads.STEP_GAIN_NEEDED * 0.95)] * 14)
    assert ran[-3:] == [1, 1, 1]


def test_a_slowed_step_makes_the_loop_measure_again(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    threads.configure()
    busy = {"on": False}
    # two threads win while the machine is idle; then the other core turns busy and two threads take 3x as long
    step = lambda n: (0.3 if busy["on"] else 0.05) if n == 2 else 0.1  # noqa: E731
    applied = []
    monkeypatch.setattr(threads, "_apply", lambda n: applied.append(n))
    tuner = threads.StepThreads()
    for i in range(30):
        if i == 15:
            busy["on"] = True
        tuner.before()
        n = applied[-1] if applied else 2
        tuner.after(step(n))
    assert threads.current().threads == 1 and applied[-1] == 1
    assert applied.count(2) > threads.STEP_BLOCK  # two threads were chosen before the load came


def test_a_measured_choice_is_measured_again_when_old(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    threads.configure()
    applied = []
    monkeypatch.setattr(threads, "_apply", lambda n: applied.append(n))
    tuner = threads.StepThreads()
    for _ in range(threads.WARMUP_STEPS + 2 * threads.STEP_BLOCK):
        tuner.before()
        tuner.after(0.1)
    first = len(applied)
    tuner.before()
    tuner.after(0.1)
    assert len(applied) == first  # fresh: no new measurement
    monkeypatch.setattr(tuner, "_decided_at", tuner._decided_at - threads.RECHECK_SECONDS - 1)
    tuner.before()
    assert applied[-1] == 1 and len(applied) == first + 1  # measuring again, one thread first


def test_a_choice_the_user_made_is_never_measured(monkeypatch, restore):
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    c = threads.configure()
    assert c.threads == 1 and c.measured_ms is None
    monkeypatch.setattr(threads, "measure", lambda cores: pytest.fail("measured a thread count the user set"))
    monkeypatch.setattr(threads, "_apply", lambda n: pytest.fail("changed a thread count the user set"))
    tuner = threads.StepThreads()
    for _ in range(20):
        tuner.before()
        tuner.after(0.1)
    assert threads.current() is c
