"""What keeps a long explanation's memory down: samples in several passes, noise drawn as its random numbers,
workspaces released after the loop, plots at display resolution, float64 totals without float64 copies."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import afmask.mask.objective as objective_module
from afmask.backend import get_backend, use_backend
from afmask.backend.workspace import POOL, return_free_memory
from afmask.mask import MaskConfig, MaskObjective, MaskRun
from afmask.report.plots import display_columns
from test_mask_gradients import T, clean_fft, small_model

ROOT = Path(__file__).resolve().parents[1]


def _objective(backend, noise="attenuate"):
    return MaskObjective(clean_fft(), small_model(backend, np.float32), "posteriors", noise=noise, backend=backend)


@pytest.mark.parametrize("noise", ["attenuate", "drop", "relative"])
def test_samples_in_several_passes_give_the_one_pass_result(backend, monkeypatch, noise):
    obj = _objective(backend, noise)
    eps = obj.draw_noise(5, samples=5)
    m = backend.asarray(np.asfortranarray(0.05 + 0.5 * np.random.default_rng(0).random((2 * obj.K, T)), np.float32))
    f1, g1, sq1 = obj.value_and_gradient(m, eps)
    monkeypatch.setattr(objective_module, "MAX_BATCH_FRAMES", 2 * T)  # two samples per pass: 2 + 2 + 1
    assert obj.samples_per_pass(5) == 2  # (ArrayFire keeps one pass whatever this says)
    f2, g2, sq2 = obj.value_and_gradient(m, eps)
    g1, g2 = backend.to_numpy(g1), backend.to_numpy(g2)
    assert f2 == pytest.approx(f1, rel=1e-5)
    np.testing.assert_allclose(g2, g1, rtol=1e-4, atol=1e-6 * np.abs(g1).max())
    assert sq2 == pytest.approx(float(np.sum(g2.astype(np.float64) ** 2)), rel=1e-9)
    assert sq2 == pytest.approx(sq1, rel=1e-4)


def test_noise_from_its_random_numbers_is_the_noise(backend):
    for noise in ("attenuate", "drop", "relative", "absolute"):
        obj = _objective(backend, noise)
        raw = obj.draw_raw(9, 3)
        assert backend.dims(raw)[0] == (obj.K if noise in ("attenuate", "drop") else 2 * obj.K)
        np.testing.assert_array_equal(backend.to_numpy(obj.noise_from(raw, 3)), backend.to_numpy(obj.draw_noise(9, 3)))
    obj = _objective(backend, "attenuate")
    eps, u = backend.to_numpy(obj.draw_noise(2, 2)), backend.to_numpy(obj.draw_raw(2, 2))
    x = backend.to_numpy(obj.x)
    # both rows of a bin get the same u: e = -u * x row by row
    np.testing.assert_array_equal(eps[0::2], -u * x[0::2, :, None])
    np.testing.assert_array_equal(eps[1::2], -u * x[1::2, :, None])


@pytest.mark.parametrize("samples,per,noise", [(5, 2, "attenuate"), (4, 1, "attenuate"), (3, 3, "attenuate"), (5, 2, "drop")])
def test_noise_made_pass_by_pass_is_the_whole_draw(samples, per, noise):
    from afmask.mask.objective import NoiseParts

    obj = _objective(get_backend("numpy"), noise)
    whole = obj.draw_noise(11, samples)
    whole = whole[:, :, None] if whole.ndim == 2 else whole
    got, s0 = [], 0
    for n, eps in NoiseParts(obj, 11, samples, per):
        eps = eps[:, :, None] if eps.ndim == 2 else eps
        assert eps.shape == (2 * obj.K, obj.T, n) and eps.flags.f_contiguous
        got.append(eps.copy())  # the parts' buffers are reused for the next part
        s0 += n
    assert s0 == samples and len(got) == -(-samples // per)
    np.testing.assert_array_equal(np.concatenate(got, axis=2), whole)


def test_a_long_run_makes_its_noise_pass_by_pass_and_gives_the_same_m(monkeypatch):
    def run_m(by_pass: bool):
        with use_backend("numpy"):
            obj = _objective(get_backend("numpy"))
            run = MaskRun(obj, MaskConfig.preset("default", iterations=4, early_stop=False))  # auto lambda too
            if not by_pass:
                monkeypatch.setattr(MaskRun, "_by_pass", lambda self: False)
            made = []
            real = obj.noise_parts
            monkeypatch.setattr(obj, "noise_parts", lambda *a: made.append(a) or real(*a))
            result = run.run(progress=False)
            monkeypatch.undo()
            return result.m, made

    monkeypatch.setattr(objective_module, "MAX_BATCH_FRAMES", T)  # one sample per pass, as for a long utterance
    m_parts, made = run_m(True)
    assert len(made) == 4 + 4  # the automatic lambda's four draws and one per iteration
    monkeypatch.setattr(objective_module, "MAX_BATCH_FRAMES", T)
    m_whole, none = run_m(False)
    assert none == []
    np.testing.assert_array_equal(m_parts, m_whole)


def test_a_run_releases_its_workspaces_and_noise_thread():
    with use_backend("numpy"):  # the pool and the noise thread are NumPy's
        run = MaskRun(_objective(get_backend("numpy")), MaskConfig.preset("default", iterations=3, lam=1.0, early_stop=False))
        run.run(progress=False)
    assert POOL.nbytes() == 0 and run._pool is None and run._ahead is None


def _rss_mb() -> float:
    return int([ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmRSS")][0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident size from /proc (Linux)")
def test_freed_heap_pages_go_back_to_the_system():
    # 64 KB blocks stay under glibc's mmap threshold, and a block allocated last pins the heap's top: without
    # a trim their pages stay resident after they are freed
    blocks = [bytearray(b"x" * 65536) for _ in range(1600)]
    pin = bytearray(b"y" * 65536)
    del blocks
    before = _rss_mb()
    if not return_free_memory():
        pytest.skip("the C library offers no malloc_trim (not glibc)")
    assert before - _rss_mb() > 50, "100 MB freed in the middle of the heap stayed resident"
    assert pin[0] == ord("y")


def test_explain_and_the_other_commands_do_not_load_dask():
    code = ("import sys; from afmask.cli import build_parser; build_parser(); import afmask.corpus as c; "
            "assert 'distributed' not in sys.modules, 'parsing loaded dask'; c.is_corpus; "
            "assert 'distributed' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_total64_accumulates_in_float64(backend):
    a = np.full((1000, 37), 1.0 + 2.0**-20, np.float32)
    a[0, 0] = 3e7  # float32 running sums would drop the small terms
    arr = backend.asarray(np.asfortranarray(a))
    want = float(np.sum(a.astype(np.float64)))
    assert backend.total64(arr) == want
    assert backend.total64(arr, squares=True) == pytest.approx(float(np.sum(a.astype(np.float64) ** 2)), rel=1e-15)


def test_display_columns_average_blocks_of_a_long_map():
    a = np.arange(2 * 10, dtype=np.float64).reshape(2, 10)
    assert display_columns(a, limit=10) is a
    out = display_columns(a, limit=5)
    np.testing.assert_array_equal(out, (a[:, 0::2] + a[:, 1::2]) / 2)
    long = np.random.default_rng(0).random((3, 10_001))
    short = display_columns(long, limit=2048)
    assert short.shape == (3, 2048)
    assert short.mean() == pytest.approx(long.mean(), rel=1e-3)
