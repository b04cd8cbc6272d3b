"""wav2letter pow features against the original C++ feature code and the original loop's dump."""

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_array_equal, assert_array_max_ulp

from afmask.features import (
    features,
    global_mean_stdev,
    magnitude,
    network_input,
    num_frames,
    pow_fft,
)
from afmask.features.stft import hamming_window
from afmask.io import read_arrays


@pytest.fixture(scope="module")
def clean100(shared):
    """(samples from soundfile, the C++ fixture npz) for clean-100.flac."""
    samples, rate = sf.read(shared / "data/librispeech/clean-100.flac", dtype="float32")
    assert rate == 16000
    return samples, dict(np.load(shared / "fixtures/w2l_features/clean-100.npz"))


def _reference_fft(samples):
    """The C++ steps written out literally, frame by frame (slow, float32 loop), for comparison."""
    x = samples.astype(np.float32) * np.float32(32768)
    t = 1 + (x.size - 400) // 160
    c = np.float32(0.97)
    win = hamming_window(400)
    out = np.empty((514, t), np.float32)
    for f in range(t):
        frame = x[f * 160 : f * 160 + 400].copy()
        for i in range(399, 0, -1):
            frame[i] -= c * frame[i - 1]
        frame[0] *= np.float32(1) - c
        frame *= win
        spec = np.fft.rfft(frame.astype(np.float64), n=512)
        out[0::2, f] = spec.real
        out[1::2, f] = spec.imag
    return out


def test_soundfile_gives_libsndfile_samples(clean100):
    samples, ref = clean100
    assert samples.dtype == np.float32
    assert_array_equal(samples, ref["samples"])


def test_pow_fft_matches_cpp_exactly(clean100):
    samples, ref = clean100
    fft = pow_fft(samples)
    assert fft.dtype == np.float32 and fft.shape == (514, num_frames(samples.size)) == (514, 618)
    assert_array_equal(fft, ref["fft"])


def test_magnitude_matches_cpp_exactly(clean100):
    samples, ref = clean100
    # The C++ takes sqrt of its double FFT output: from the double FFT it is bit-exact ...
    mag = magnitude(pow_fft(samples, dtype=np.float64))
    assert mag.dtype == np.float32 and mag.shape == (257, 618)
    assert_array_equal(mag, ref["magnitude"])
    # ... and the convenience bundle uses that route.
    out = features(samples)
    assert_array_equal(out["fft"], ref["fft"])
    assert_array_equal(out["magnitude"], ref["magnitude"])
    assert out["input"].shape == (618, 257) and out["input"].dtype == np.float32
    # From the float32 FFT the double sqrt is off by at most one float32 ulp.
    assert_array_max_ulp(magnitude(ref["fft"]), ref["magnitude"], maxulp=1)


def test_vectorised_fft_matches_literal_loop():
    rng = np.random.default_rng(0)
    samples = (rng.uniform(-0.5, 0.5, 1234)).astype(np.float32)  # T = 6, 34 tail samples dropped
    fft = pow_fft(samples)
    assert fft.shape == (514, 6)
    assert_array_equal(fft, _reference_fft(samples))


def test_single_frame_and_short_input():
    samples = np.zeros(400, np.float32)
    samples[10] = 0.5
    assert pow_fft(samples).shape == (514, 1)
    assert pow_fft(samples[:559]).shape == (514, 1)
    with pytest.raises(ValueError, match="at least 400 samples.*399"):
        pow_fft(samples[:399])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((800, 2), np.float32), "1-D"),
        (np.zeros(800, np.int16), "dtype int16"),
        (np.full(800, np.nan, np.float32), "NaN"),
        (np.full(800, 3.0, np.float32), "peak 3.0"),
    ],
)
def test_bad_samples_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        pow_fft(bad)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(514, T\)"):
        magnitude(np.zeros((512, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(257, T\)"):
        network_input(np.zeros((3, 257), np.float32))
    with pytest.raises(ValueError, match="stdev"):
        network_input(np.ones((257, 4), np.float32))
    with pytest.raises(ValueError, match="stats"):
        global_mean_stdev(np.ones(3), stats="float32")


def test_network_input_normalises_globally(clean100):
    _, ref = clean100
    mag = ref["magnitude"]
    x = network_input(mag)
    assert x.shape == (618, 257) and x.dtype == np.float32
    # float64 statistics: mean 0 and population stdev 1 up to float32 rounding.
    assert abs(float(x.astype(np.float64).mean())) < 1e-6
    assert abs(float(x.astype(np.float64).std()) - 1.0) < 1e-6
    mean, stdev = mag.astype(np.float64).mean(), mag.astype(np.float64).std()
    # Rounding mean and stdev to float32, then one float32 subtraction and one
    # division: a few 2^-24 (6e-8) relative roundings of values up to ~34.
    np.testing.assert_allclose(x, ((mag.T - mean) / stdev), rtol=3e-7, atol=1e-6)


def test_network_input_replays_arrayfire_cpu_dump(shared):
    dump = read_arrays(shared / "fixtures/cpp_dump/dump_letters_it0.af")
    fft, m, eps = (dump[k] for k in ("fft", "m", "eps"))
    # The loop's noisy magnitudes, as ArrayFire computes them (float32 throughout).
    noisy = fft + eps * m
    mag = np.sqrt(noisy[0::2] * noisy[0::2] + noisy[1::2] * noisy[1::2])
    mean, stdev = global_mean_stdev(mag.T, stats="arrayfire_cpu")
    assert mean == dump["in_mean"].item() and stdev == dump["in_stdev"].item()
    assert_array_equal(network_input(mag, stats="arrayfire_cpu"), dump["input"])
    # af::stdev<float> of the clean FFT (the noise scale) too.
    assert global_mean_stdev(fft, stats="arrayfire_cpu")[1] == dump["fftstdev"].item()
    # float64 statistics differ from the float32 accumulation by ~1e-5 relative:
    # at most 2e-4 in normalised units here (values up to ~20).
    assert np.max(np.abs(network_input(mag) - dump["input"])) < 2e-4
