"""Least-squares inverse of the pow features: round trips on real speech, modified spectra."""

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_allclose, assert_array_equal

from afmask.features import fft_from_magnitude, istft, magnitude, num_frames, pow_fft
from afmask.features.stft import covered_samples, hamming_window

SPEECH = [
    "data/librispeech/clean-100.flac",
    "data/librispeech/utt-000000000.flac",
    "data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
]


def _snr_db(ref, est):
    ref = ref.astype(np.float64)
    err = est.astype(np.float64) - ref
    return 10 * np.log10(np.sum(ref**2) / np.sum(err**2))


@pytest.mark.parametrize("name", SPEECH)
def test_round_trip_on_speech(shared, name):
    samples, rate = sf.read(shared / name, dtype="float32")
    assert rate == 16000
    n = samples.size
    fft = pow_fft(samples)
    t = fft.shape[1]
    covered = covered_samples(t)
    out = istft(fft, num_samples=n)
    assert out.shape == (n,) and out.dtype == np.float32

    err = np.abs(out[:covered].astype(np.float64) - samples[:covered])
    snr = _snr_db(samples[:covered], out[:covered])
    print(f"{name}: max abs error {err.max():.3g}, SNR {snr:.1f} dB, tail {n - covered} samples zeroed")
    # The only error source is the float32 rounding of the stored FFT (2^-24
    # relative to each value) carried through a solve whose condition number
    # is a few thousand (de-emphasis gain 1/0.03 at DC), plus the float32
    # rounding of the output. Measured: max 6e-8, SNR 139 dB. The bounds leave
    # a factor ~16 and stay far below one 16-bit step (1/32768 = 3.1e-5).
    assert err.max() < 1e-6
    assert snr > 120
    # First frame region (samples 0..159, held by one frame only, with the
    # per-frame 0.03 first-sample scaling) and the last frame's own samples
    # are recovered as well as the middle.
    assert err[:160].max() < 1e-6 and err[-160:].max() < 1e-6
    # Samples after the last full frame were never analysed: zeros.
    assert_array_equal(out[covered:], 0.0)
    # Default length: exactly the covered samples.
    assert_array_equal(istft(fft), out[:covered])


def test_least_squares_against_dense_solve():
    """istft is the exact least-squares inverse of the (float64) analysis operator."""
    t, k = 3, 257
    n = covered_samples(t)
    c = float(np.float32(0.97))
    e = np.eye(400) - c * np.eye(400, k=-1)
    e[0, 0] = float(np.float32(1) - np.float32(0.97))
    we = hamming_window(400).astype(np.float64)[:, None] * e  # W E, (400, 400)
    dft = np.fft.rfft(np.eye(512)[:, :400], axis=0)  # (257, 400): rfft of zero-padded frames
    # Full-spectrum norm: bins 1..255 stand for two conjugate bins each.
    weight = np.sqrt(np.r_[1.0, np.full(k - 2, 2.0), 1.0])[:, None]
    rows = []
    for f in range(t):
        select = np.zeros((400, n))
        select[np.arange(400), f * 160 + np.arange(400)] = 1
        m = weight * (dft @ we @ select) * 32768
        rows += [m.real, m.imag]
    op = np.vstack(rows)

    rng = np.random.default_rng(1)
    spec = (rng.normal(size=(514, t)) * 100).astype(np.float32)  # arbitrary, inconsistent
    y = np.concatenate([weight[:, 0] * spec[part::2, f] for f in range(t) for part in (0, 1)])
    x_dense = np.linalg.lstsq(op, y.astype(np.float64), rcond=None)[0]
    # Same problem, both in float64: only istft's float32 output rounding
    # (2^-24 relative) separates them; measured 5.5e-8 of the peak.
    assert_allclose(istft(spec), x_dense, rtol=0, atol=5e-7 * np.abs(x_dense).max())


def test_projection_is_idempotent_after_zeroing(shared):
    samples, _ = sf.read(shared / SPEECH[0], dtype="float32")
    fft = pow_fft(samples)
    mag = magnitude(fft)
    # Zero the top half of the points by magnitude (the kind of edit renditions make).
    mod = np.where(mag >= np.median(mag), 0.0, mag).astype(np.float32)
    y = istft(fft_from_magnitude(mod, fft), num_samples=samples.size)
    assert np.all(np.isfinite(y))
    y = y / max(1.0, 1.01 * float(np.abs(y).max()))
    # Least squares projects onto consistent spectra: doing it again changes nothing.
    covered = covered_samples(fft.shape[1])
    again = istft(pow_fft(y), num_samples=samples.size)
    assert np.max(np.abs(again[:covered] - y[:covered])) < 1e-6


def test_all_zero_spectrum_gives_silence():
    out = istft(np.zeros((514, 10), np.float32), num_samples=1900)
    assert_array_equal(out, np.zeros(1900, np.float32))


def test_num_samples_must_fit():
    fft = np.zeros((514, 10), np.float32)  # covers 1840 samples, fits N in 1840..1999
    assert istft(fft, 1999).shape == (1999,)
    for bad in (1839, 2000, 100):
        with pytest.raises(ValueError, match=f"num_samples = {bad}"):
            istft(fft, bad)
    assert num_frames(1999) == 10


def test_bad_fft_raises():
    with pytest.raises(ValueError, match=r"\(514, T\)"):
        istft(np.zeros((257, 4), np.float32))
    bad = np.zeros((514, 4), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        istft(bad)


def test_fft_from_magnitude():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(514, 5)).astype(np.float32)
    ref[2:4, 1] = 0.0  # bin 1 of frame 1 is exactly zero
    mag = magnitude(ref)
    # Own magnitudes and own phase give back the FFT.
    assert_allclose(fft_from_magnitude(mag, ref), ref, rtol=1e-6, atol=1e-6)
    # A zero reference bin gets phase 0: the new magnitude goes to the real part.
    new = np.ones_like(mag)
    out = fft_from_magnitude(new, ref)
    assert out.dtype == np.float32 and out.shape == (514, 5)
    assert out[2, 1] == 1.0 and out[3, 1] == 0.0
    assert_allclose(magnitude(out), new, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(257, 5\)"):
        fft_from_magnitude(mag[:, :4], ref)
    with pytest.raises(ValueError, match=">= 0"):
        fft_from_magnitude(-new, ref)
