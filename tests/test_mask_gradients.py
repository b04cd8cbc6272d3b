"""The note's hand-written gradient against afmask.fl's autograd and central finite differences (float64)."""

import numpy as np
import pytest

from afmask.fl import Variable, gradcheck, nn
from afmask.mask import MaskObjective

K, T = 9, 24


def small_model(backend, dtype=np.float64, seed=0, width=6):
    """A wav2letter-shaped network: View, stride-2 SAME conv, ReLU, Reorder, Linear -> 31 tokens."""
    rng = np.random.default_rng(seed)
    model = nn.Sequential([
        nn.View((-1, 1, K, 0)),
        nn.Conv2D(K, width, 4, 1, 2, 1, nn.SAME, 0, rng=rng),
        nn.ReLU(),
        nn.Reorder(2, 0, 3, 1),
        nn.Linear(width, 31, rng=rng),
    ])
    for i, p in enumerate(model.params()):
        model.setParams(Variable(backend.asarray(p.host().astype(dtype) * 3.0), False), i)
    return model


def clean_fft(seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2 * K, T)) * 300).astype(np.float32)


def setup(backend, variant, noise="absolute", samples=1, dtype=np.float64, seed=3):
    obj = MaskObjective(clean_fft(), small_model(backend, dtype), variant, noise=noise, dtype=dtype, backend=backend)
    eps = obj.draw_noise(seed, samples)
    rng = np.random.default_rng(seed)
    m = backend.asarray(np.asfortranarray(0.05 + 0.2 * rng.random((2 * K, T))).astype(dtype))
    return obj, eps, m


@pytest.mark.parametrize("variant", ["letters", "pitfall", "posteriors"])
@pytest.mark.parametrize("noise,samples", [("absolute", 1), ("relative", 3), ("attenuate", 2), ("drop", 3)])
def test_hand_gradient_equals_autograd_and_finite_differences(backend, variant, noise, samples):
    obj, eps, m = setup(backend, variant, noise, samples)
    fw = obj.forward(m, eps)
    hand, hand_sq = obj.data_gradient(fw)
    mv = Variable(m, True)
    f = obj.autograd_f(mv, eps)
    assert f.scalar() == pytest.approx(fw.f.scalar(), rel=1e-12)
    f.backward()
    auto = mv.grad().host()
    hand = backend.to_numpy(hand)
    scale = np.max(np.abs(auto))
    assert scale > 0
    np.testing.assert_allclose(hand, auto, rtol=0, atol=1e-10 * scale)
    assert hand_sq == pytest.approx(float(np.sum(hand.astype(np.float64) ** 2)), rel=1e-10)
    report = gradcheck(lambda mm: obj.autograd_f(mm, eps), [Variable(m, True)], max_elements=120, rtol=1e-5)
    assert report.passed, str(report)


@pytest.mark.parametrize("variant,noise,samples", [("letters", "absolute", 1), ("pitfall", "absolute", 1), ("posteriors", "relative", 3), ("posteriors", "attenuate", 2), ("posteriors", "drop", 3)])
def test_float32_fused_kernel_matches_float64(backend, variant, noise, samples):
    if backend.name != "numpy":
        pytest.skip("the float32/float64 comparison runs on the numpy backend")
    obj64, eps64, m64 = setup(backend, variant, noise, samples, dtype=np.float64)
    g64 = backend.to_numpy(obj64.data_gradient(obj64.forward(m64, eps64))[0])
    obj32 = MaskObjective(clean_fft(), small_model(backend, np.float32), variant, noise=noise, dtype=np.float32, backend=backend)
    assert obj32.kernel_path in ("ext", "expr")
    eps32 = np.asfortranarray(backend.to_numpy(eps64).astype(np.float32))
    m32 = np.asfortranarray(backend.to_numpy(m64).astype(np.float32))
    g32 = obj32.data_gradient(obj32.forward(m32, eps32))[0]
    np.testing.assert_allclose(g32, g64, rtol=0, atol=2e-4 * np.max(np.abs(g64)))


def test_zero_magnitude_bin_gets_a_zero_data_gradient(backend):
    obj, eps, m = setup(backend, "letters")
    x = obj.B.to_numpy(obj.x).copy()
    # a bin whose perturbed value is exactly 0: clean value 0 and m = 0 there
    x[2:4, 5] = 0
    obj2 = MaskObjective(x, obj.model, "letters", dtype=np.float64, backend=backend)
    mh = backend.to_numpy(m).copy()
    mh[2:4, 5] = 0
    g = backend.to_numpy(obj2.data_gradient(obj2.forward(backend.asarray(np.asfortranarray(mh)), eps))[0])
    assert np.all(np.isfinite(g)) and np.all(g[2:4, 5] == 0)


def float64_copy(model, backend):
    """The same network with float64 parameters (for gradient checks)."""
    from afmask.fl import Variable

    for i, p in enumerate(model.params()):
        model.setParams(Variable(backend.asarray(p.host().astype(np.float64)), False), i)
    return model


@pytest.mark.parametrize("variant", ["letters", "pitfall", "posteriors"])
def test_hand_gradient_on_the_demo_model(backend, variant):
    """On the shipped recogniser and real speech (60 frames of the bundled utterance), float64."""
    from afmask.io import demo_audio
    from afmask.features import features
    from afmask.io import load_audio
    from afmask.model import demo_model

    fft = features(load_audio(demo_audio()))["fft"][:, 100:160]
    model = float64_copy(demo_model(), backend)
    obj = MaskObjective(fft, model, variant, dtype=np.float64, backend=backend)
    eps = obj.draw_noise(5, 1)
    m = backend.asarray(np.full(fft.shape, 0.1, order="F"))
    hand = backend.to_numpy(obj.data_gradient(obj.forward(m, eps))[0])
    mv = Variable(m, True)
    obj.autograd_f(mv, eps).backward()
    auto = mv.grad().host()
    np.testing.assert_allclose(hand, auto, rtol=0, atol=1e-10 * np.max(np.abs(auto)))
    report = gradcheck(lambda mm: obj.autograd_f(mm, eps), [Variable(m, True)], max_elements=30, rtol=1e-5)
    assert report.passed, str(report)
