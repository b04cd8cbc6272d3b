"""afmask's thread choice follows the work and the load: a GEMM at the start, then the mask loop's own steps, measured
again when old or when a step slows down (a core turned busy)."""

import pytest

from afmask.backend import threads


@pytest.fixture()
def restore():
    saved = (threads._choice, threads._measured_at, threads._in_force, threads._pinned)
    apply = threads._apply  # the real one: tests replace it
    yield
    threads._choice, threads._measured_at, threads._in_force, threads._pinned = saved
    apply(saved[0].threads if saved[0] is not None else 1, saved[3])


def _measured(monkeypatch, ms):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_current_backend", lambda: "numpy")
    monkeypatch.setattr(threads, "measure", lambda cores: dict(ms))
    monkeypatch.setattr(threads, "count_dependent", lambda cores: False)  # a BLAS whose bits do not change


def _recorded(monkeypatch) -> list:
    """threadpoolctl left alone: the counts afmask applies, in order (the one in force is the last)."""
    applied = []

    def apply(n, pin_others=False):
        applied.append(n)
        threads._in_force, threads._pinned = n, pin_others

    monkeypatch.setattr(threads, "_apply", apply)
    return applied


def _loop(tuner, step_seconds):
    """Run ``tuner`` over steps whose time depends on the count in force; the counts the steps ran with."""
    ran = []
    for seconds in step_seconds:
        tuner.before()
        ran.append(threads._in_force)
        tuner.after(seconds(threads._in_force))
    return ran


def test_a_loop_keeps_the_thread_count_its_own_steps_measure_faster(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    _recorded(monkeypatch)
    assert threads.configure().threads == 2  # the GEMM says two
    # but the steps (a noise thread beside the GEMMs) are faster on one. The first two one-thread steps are slow
    # (workers still spinning): counted, they would make the median of four 0.3 and two threads win; the first
    # of each block is not counted, and the median of the other three is one thread's
    spin = iter([True, True])
    times = [lambda n: 1.0] * threads.WARMUP_STEPS + [lambda n: 0.10 if n == 1 and not next(spin, False) else
                                                     (0.13 if n == 2 else 0.5)] * 12
    ran = _loop(threads.StepThreads(), times)
    b, w = threads.STEP_BLOCK, threads.WARMUP_STEPS
    assert ran[:w] == [2] * w
    assert ran[w : w + 2 * b] == [1] * b + [2] * b
    assert ran[w + 2 * b :] == [1] * (len(ran) - w - 2 * b)
    c = threads.current()
    assert c.threads == 1 and "run's own iterations" in c.reason and c.measured_ms is not None


def test_a_loop_takes_more_threads_when_its_steps_are_clearly_faster(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    _recorded(monkeypatch)
    assert threads.configure().threads == 1
    ran = _loop(threads.StepThreads(), [lambda n: 0.1 / n] * 14)
    assert ran[-3:] == [2, 2, 2] and threads.current().threads == 2
    # a gain under STEP_GAIN_NEEDED keeps one thread
    threads.configure()
    ran = _loop(threads.StepThreads(), [lambda n: 0.1 if n == 1 else 0.1 / (threads.STEP_GAIN_NEEDED * 0.95)] * 14)
    assert ran[-3:] == [1, 1, 1]


def test_a_slowed_step_makes_the_loop_measure_again(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    _recorded(monkeypatch)
    threads.configure()
    busy = {"on": False}
    # two threads win while the machine is idle; then the other core turns busy and two threads take 3x as long

    def step(n):
        return (0.3 if busy["on"] else 0.05) if n == 2 else 0.1

    tuner, ran = threads.StepThreads(), []
    for i in range(30):
        busy["on"] = i >= 15
        ran += _loop(tuner, [step])
    assert ran[14] == 2 and ran[-1] == 1 and threads.current().threads == 1


def test_a_measured_choice_is_measured_again_when_old(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    _recorded(monkeypatch)
    threads.configure()
    tuner = threads.StepThreads()
    _loop(tuner, [lambda n: 0.1 / n] * (threads.WARMUP_STEPS + 2 * threads.STEP_BLOCK + 1))
    assert _loop(tuner, [lambda n: 0.1 / n]) == [2]  # fresh: no new measurement
    monkeypatch.setattr(tuner, "_decided_at", tuner._decided_at - threads.RECHECK_SECONDS - 1)
    assert _loop(tuner, [lambda n: 0.1 / n]) == [1]  # measuring again, one thread first


def test_loops_on_two_backends_take_turns_each_with_its_own_count(monkeypatch, restore):
    """As in ``afmask bench backends``: a NumPy loop that measures two threads faster and an ArrayFire loop that
    measures one faster alternate in one process; the ArrayFire loop's steps run with ArrayFire's own BLAS held
    at one thread (its results change with the count), the NumPy loop's without."""
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    _recorded(monkeypatch)
    threads.configure()
    on_numpy, on_af = threads.StepThreads("numpy"), threads.StepThreads("arrayfire")
    ran = {"numpy": [], "arrayfire": []}
    pinned = {"numpy": set(), "arrayfire": set()}
    for _ in range(16):
        ran["numpy"] += _loop(on_numpy, [lambda n: 0.1 / n])
        pinned["numpy"].add(threads._pinned)
        ran["arrayfire"] += _loop(on_af, [lambda n: 0.1 * n])
        pinned["arrayfire"].add(threads._pinned)
    assert ran["numpy"][-4:] == [2, 2, 2, 2] and ran["arrayfire"][-4:] == [1, 1, 1, 1]
    assert pinned == {"numpy": {False}, "arrayfire": {True}}


def test_pinning_holds_only_the_other_blas_at_one_thread(restore):
    from threadpoolctl import threadpool_info

    threads._apply(2, pin_others=True)
    ours = threads._numpy_blas_prefixes()
    assert ours, "NumPy's own BLAS was not found"
    for info in threadpool_info():
        if info["user_api"] == "blas":
            assert info["num_threads"] == (2 if info["prefix"] in ours else 1), info["filepath"]


def test_a_choice_the_user_made_is_never_measured(monkeypatch, restore):
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    c = threads.configure()
    assert c.threads == 1 and c.measured_ms is None
    monkeypatch.setattr(threads, "measure", lambda cores: pytest.fail("measured a thread count the user set"))
    applied = _recorded(monkeypatch)
    _loop(threads.StepThreads(), [lambda n: 0.1 / n] * 20)
    assert set(applied) <= {1} and threads.current() is c


def test_more_threads_that_are_much_slower_end_their_block_early(monkeypatch, restore):
    """With the other core busy two threads may take 3x as long: one such step (after the block's first, not
    counted) ends the measurement instead of the whole block."""
    _measured(monkeypatch, {1: 1.0, 2: 0.5})
    _recorded(monkeypatch)
    threads.configure()
    ran = _loop(threads.StepThreads(), [lambda n: 0.1 if n == 1 else 0.3] * 16)
    w, b = threads.WARMUP_STEPS, threads.STEP_BLOCK
    assert ran[w : w + b] == [1] * b and ran[w + b : w + b + 2] == [2, 2]
    assert ran[w + b + 2 :] == [1] * (len(ran) - w - b - 2) and threads.current().threads == 1


def test_a_slow_step_on_one_thread_does_not_start_a_measurement(monkeypatch, restore):
    _measured(monkeypatch, {1: 1.0, 2: 1.6})
    _recorded(monkeypatch)
    threads.configure()
    tuner = threads.StepThreads()
    _loop(tuner, [lambda n: 0.1 if n == 1 else 0.2] * (threads.WARMUP_STEPS + 2 * threads.STEP_BLOCK + 1))
    assert threads.current().threads == 1
    # the other core turns busy and one-thread steps slow down too: more threads would not help
    assert _loop(tuner, [lambda n: 0.3 if n == 1 else 0.9] * 6) == [1] * 6


def test_the_extension_loops_follow_every_change_of_count(restore):
    """The extension's OpenMP loops run with the count in force, not with the one of its first load (on a busy
    core a loop measured down to one thread still ran them on two, and each waited for the busy core)."""
    ext = pytest.importorskip("afmask._ext", reason="afmask._ext is not built")
    ext.set_num_threads(2)  # as afmask.kernels sets it when it first loads the extension
    for n in (1, 3, 2, 1):
        threads._apply(n)
        assert ext.get_num_threads() == n


def test_a_blas_whose_bits_change_with_the_count_keeps_one_thread_and_is_never_measured(monkeypatch, restore):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_current_backend", lambda: "numpy")
    monkeypatch.setattr(threads, "count_dependent", lambda cores: True)
    monkeypatch.setattr(threads, "measure", lambda cores: pytest.fail("measured although the count changes the bits"))
    _recorded(monkeypatch)
    choice = threads.configure()
    assert choice.threads == 1 and choice.fixed and "bit-identical" in choice.reason
    ran = _loop(threads.StepThreads(), [lambda n: 0.1] * 20)
    assert ran == [1] * 20  # no block of two-thread steps
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.configure().threads == 2  # the user's count stands


def test_the_count_probe_sees_what_changes_the_networks_bits(restore):
    """If the demo model's forward and backward give other bits on two threads than on one, the probe says so
    (a probe that missed it would let a resumed or re-run seeded explanation come out different)."""
    import numpy as np

    from afmask.bench.torch import afmask_fwd_bwd
    from afmask.model import demo_model

    net = demo_model()
    net.eval()
    x = np.random.default_rng(0).standard_normal((96, 257, 1, 1)).astype(np.float32)
    run = afmask_fwd_bwd(net, x)
    threads._apply(1)
    one = run().copy()
    threads._apply(2)
    two = run().copy()
    threads._count_dependent.clear()
    if not np.array_equal(one, two):
        assert threads.count_dependent(2)
    else:
        assert not threads.count_dependent(2)
