"""Back from an interleaved FFT (possibly with modified magnitudes) to samples for listening.

The analysis in :mod:`afmask.features.stft` is linear in the samples: frame t
is ``y_t = W E x_t`` (``x_t`` the 400 samples of frame t times 32768, ``E`` the
per-frame pre-emphasis, a lower bidiagonal matrix with diagonal
``(1 - 0.97, 1, ..., 1)`` and sub-diagonal ``-0.97``, ``W`` the Hamming
window), zero-padded to 512 and transformed by the real FFT. :func:`istft`
returns the least-squares inverse of that whole chain: the samples x that
minimise ``sum_t || rfft512(pad(W E x_t)) - X_t ||^2`` (Parseval norm of the
full 512-point spectrum). That undoes

- the FFT (``irfft``; the imaginary parts of bins 0 and 256 and the 112
  padded samples of each frame, which no real 400-sample frame can produce,
  are dropped, as least squares does),
- the window and the overlap (least-squares overlap-add with the analysis
  window: each sample is a window-weighted average of all frames that hold it),
- the per-frame pre-emphasis including its ``(1 - 0.97)`` first sample, exactly
  rather than by a global de-emphasis filter, and
- the 32768 scale.

The normal equations ``sum_t S_t^T E^T W^2 E S_t x = sum_t S_t^T E^T W y_t`` are
tridiagonal (E bidiagonal, W diagonal) and positive definite on the samples
the frames cover, so one banded Cholesky solve in float64 gives the exact
least-squares answer in O(N). The matrix does not depend on the spectrum, so
zeroed or otherwise modified magnitudes cannot make the solve unstable; its
condition number is set by the de-emphasis gain at low frequencies
(1 / 0.03 at DC, a condition number of a few thousand), harmless in float64.

For an unmodified FFT this recovers the samples up to the float32 rounding
of the stored FFT. Samples after the last full frame (up to 159 of them,
``N - 400 - 160 (T - 1)``) were never analysed; :func:`istft` returns zeros
there. Modified spectra can give samples outside [-1, 1); peak normalisation
is left to the caller (the rendition writer).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solveh_banded

from .stft import (
    FFT_SIZE,
    FRAME_LENGTH,
    FRAME_SHIFT,
    NUM_BINS,
    PREEMPHASIS,
    SCALE,
    _check_fft,
    covered_samples,
    hamming_window,
    num_frames,
)


def _analysis_operator_diagonals() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame diagonal d of E, window w, and the tridiagonal (main, upper) of E^T W^2 E, float64."""
    c = float(PREEMPHASIS)  # the float32 0.97f the analysis used, as a double
    w = hamming_window(FRAME_LENGTH).astype(np.float64)
    d = np.ones(FRAME_LENGTH)
    d[0] = float(np.float32(1.0) - PREEMPHASIS)  # 0.029999971, as in the analysis
    w2 = w * w
    main = d * d * w2
    main[:-1] += c * c * w2[1:]
    upper = -c * w2[1:]  # entry (n, n+1), n = 0..398
    return d, w, np.stack([main, np.append(upper, 0.0)])


def istft(fft: np.ndarray, num_samples: int | None = None) -> np.ndarray:
    """Samples (num_samples,) float32 in [-1, 1) scale from an interleaved FFT (514, T), by least squares.

    Undoes the FFT, the Hamming window (least-squares overlap-add with hop
    160), the per-frame pre-emphasis and the 32768 scale (module docstring).
    ``num_samples`` defaults to the 400 + 160 (T - 1) samples the frames
    cover; a larger value (the original N, with T = 1 + (N - 400) // 160)
    pads the never-analysed tail with zeros.
    """
    fft = _check_fft(fft)
    if not np.all(np.isfinite(fft)):
        raise ValueError("interleaved FFT contains NaN or inf")
    t = fft.shape[1]
    if t < 1:
        raise ValueError(f"interleaved FFT has no frames (shape {fft.shape})")
    covered = covered_samples(t)
    if num_samples is None:
        num_samples = covered
    elif num_samples < FRAME_LENGTH or num_frames(num_samples) != t:
        raise ValueError(
            f"num_samples = {num_samples} does not fit T = {t} frames: need "
            f"{covered} <= num_samples < {covered + FRAME_SHIFT}"
        )

    f = fft.astype(np.float64, copy=False)
    spec = f[0::2] + 1j * f[1::2]  # (K, T)
    frames = np.fft.irfft(spec, n=FFT_SIZE, axis=0)[:FRAME_LENGTH].T  # (T, 400)

    d, w, band = _analysis_operator_diagonals()
    c = float(PREEMPHASIS)
    wy = frames * w
    rhs_frames = d * wy  # E^T (W y): diagonal part ...
    rhs_frames[:, :-1] -= c * wy[:, 1:]  # ... and the -c super-diagonal of E^T

    # Overlap-add per-frame contributions with bincount (no Python loop over frames).
    index = (np.arange(t)[:, None] * FRAME_SHIFT + np.arange(FRAME_LENGTH)[None, :]).ravel()
    rhs = np.bincount(index, weights=rhs_frames.ravel(), minlength=covered)
    main = np.bincount(index, weights=np.tile(band[0], t), minlength=covered)
    upper = np.bincount(index, weights=np.tile(band[1], t), minlength=covered)

    ab = np.empty((2, covered))
    ab[0, 0] = 0.0
    ab[0, 1:] = upper[:-1]  # solveh_banded upper form: ab[0, j] = A[j-1, j]
    ab[1] = main
    x = solveh_banded(ab, rhs, lower=False, check_finite=False)

    out = np.zeros(num_samples, dtype=np.float32)
    out[:covered] = x / SCALE
    return out


def fft_from_magnitude(mag: np.ndarray, phase_fft: np.ndarray) -> np.ndarray:
    """Interleaved FFT (514, T) float32 with magnitudes mag (257, T) and the phase of phase_fft (514, T).

    The unit phasor of each reference bin is computed in float64; a bin whose
    reference is exactly zero gets phase 0 (a real, non-negative value), so
    the result is defined everywhere. Negative magnitudes are rejected.
    """
    mag = np.asarray(mag)
    if mag.ndim == 1:
        mag = mag[:, None]
    ref = _check_fft(phase_fft).astype(np.float64, copy=False)
    if mag.shape != (NUM_BINS, ref.shape[1]):
        raise ValueError(
            f"magnitudes must have shape ({NUM_BINS}, {ref.shape[1]}) to match the "
            f"reference FFT {ref.shape}, got {mag.shape}"
        )
    mag = mag.astype(np.float64)
    if not np.all(np.isfinite(mag)) or np.any(mag < 0):
        raise ValueError(f"magnitudes must be finite and >= 0, got min {np.nanmin(mag)}")
    re, im = ref[0::2], ref[1::2]
    norm = np.hypot(re, im)
    zero = norm == 0
    safe = np.where(zero, 1.0, norm)
    cos = np.where(zero, 1.0, re / safe)
    sin = np.where(zero, 0.0, im / safe)
    out = np.empty((2 * NUM_BINS, ref.shape[1]), dtype=np.float32)
    out[0::2] = mag * cos
    out[1::2] = mag * sin
    return out
