"""stats="float64" means float64: f and df/dm at T = 1593 against the whole objective in float64."""

import numpy as np
import pytest

from afmask.backend import get_backend, use_backend
from afmask.mask import MaskConfig, MaskObjective


def _float64_copy(model):
    from afmask.fl import Variable

    for i, p in enumerate(model.params()):
        model.setParams(Variable(p.host().astype(np.float64), False), i)
    return model


def test_float64_statistics_match_a_float64_reference(shared):
    with use_backend("numpy"):  # a NumPy test (the statistics' host path), whichever backend the suite runs on
        _float64_statistics_match(shared)


def _float64_statistics_match(shared):
    from afmask.features import features
    from afmask.io import load_audio
    from afmask.model import demo_model

    fft = features(load_audio(shared / "data" / "librispeech" / "utt-000000000.flac"))["fft"]
    if fft.shape[1] < 1593:
        pytest.skip(f"utt-000000000 has {fft.shape[1]} frames, fewer than 1593")
    fft = fft[:, :1593]
    cfg = MaskConfig.preset("default")  # posteriors, relative noise, 4 samples
    B = get_backend("numpy")
    obj32 = MaskObjective(fft, demo_model(), cfg.variant, noise=cfg.noise, stats="float64", backend=B)
    obj64 = MaskObjective(fft, _float64_copy(demo_model()), cfg.variant, noise=cfg.noise, stats="float64",
                          backend=B, dtype=np.float64)
    m = np.full(fft.shape, 0.1, np.float32, order="F")  # the default start; the float32 network adds ~5e-6 to f
    eps = obj32.draw_noise(7, cfg.samples)
    fw32 = obj32.forward(m, eps)
    g32, _ = obj32.data_gradient(fw32)
    fw64 = obj64.forward(np.asfortranarray(m, np.float64), np.asfortranarray(eps, np.float64))
    g64, _ = obj64.data_gradient(fw64)
    f32, f64 = fw32.f.scalar(), fw64.f.scalar()
    assert abs(f32 - f64) <= 1e-5 * abs(f64), (f32, f64)
    g32, g64 = np.asarray(g32, np.float64), np.asarray(g64)
    err = np.max(np.abs(g32 - g64)) / np.max(np.abs(g64))
    assert err <= 1e-4, f"df/dm: largest error {err:.3g} of the largest element"
    # the network input itself: float32 rounding of the float64 one (float32 statistics were off by 2.4e-3)
    assert np.max(np.abs(fw32.input.host() - fw64.input.host())) <= 1e-5
    assert fw32.stdev.dtype == np.float64
