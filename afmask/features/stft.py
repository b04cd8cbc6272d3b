"""wav2letter "pow" features on the host: interleaved FFT, magnitudes, global normalisation.

Follows the precision steps of the original C++ feature code (wav2letter's
``PowerSpectrum``/``PreEmphasis``/``Windowing`` as forked in
MarkDana/interpret-wav2letter, ``myapply``) so that the results match it bit
for bit (see DESIGN.md, "wav2letter pow features"):

- samples are float32 in [-1, 1) as libsndfile gives them, times 32768 (float32);
- frames of 400 samples, hop 160, ``T = 1 + (N - 400) // 160``; samples after
  the last full frame are dropped;
- per frame, pre-emphasis applied backwards with the float32 coefficient
  ``0.97f`` (``x[i] -= 0.97f * x[i-1]`` from the end down to 1, then
  ``x[0] *= 1 - 0.97f`` = 0.029999971), in float32;
- Hamming window ``0.54 - 0.46 cos(2 pi n / 399)`` computed in double, stored as
  float32, applied in float32;
- zero-padded to 512, unnormalised real FFT in double (K = 257 bins), results
  stored as float32, interleaved: ``[2k, t] = Re X_t[k]``, ``[2k+1, t] = Im``;
- magnitudes ``sqrt(Re^2 + Im^2)`` in double, stored as float32.

Arrays are in ArrayFire orientation (CONTRIBUTING.md): the FFT is ``(2K, T)``,
the magnitudes ``(K, T)``, the network input ``(T, K)``.
"""

from __future__ import annotations

import struct

import numpy as np

SAMPLE_RATE = 16000  #: samples per second the features assume
SCALE = 32768.0  #: libsndfile float scale -> 16-bit integer scale
FRAME_LENGTH = 400  #: 25 ms at 16 kHz
FRAME_SHIFT = 160  #: 10 ms at 16 kHz
FFT_SIZE = 512  #: frames are zero-padded to this length
NUM_BINS = FFT_SIZE // 2 + 1  #: K = 257
PREEMPHASIS = np.float32(0.97)  #: the C++ coefficient, a float32
STATS_MODES = ("float64", "arrayfire_cpu")


def hamming_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Hamming window (length,) float32: coefficients computed in double, stored as float32."""
    if length < 2:
        raise ValueError(f"window length must be >= 2, got {length}")
    n = np.arange(length, dtype=np.float64)
    return (0.54 - 0.46 * np.cos(2.0 * np.pi * n / (length - 1))).astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Number of full frames T = 1 + (N - 400) // 160 for N samples (ValueError below 400)."""
    if num_samples < FRAME_LENGTH:
        raise ValueError(
            f"need at least {FRAME_LENGTH} samples (one 25 ms frame at 16 kHz), got {num_samples}"
        )
    return 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def covered_samples(num_frames_: int) -> int:
    """Number of leading samples that T full frames cover: 400 + 160 (T - 1)."""
    if num_frames_ < 1:
        raise ValueError(f"need at least one frame, got T = {num_frames_}")
    return FRAME_LENGTH + FRAME_SHIFT * (num_frames_ - 1)


def _check_samples(samples: np.ndarray) -> np.ndarray:
    """Validate 1-D float samples in [-1, 1] and return them as float32."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(
            f"samples must be 1-D (mono), got shape {samples.shape}; mix down or pick a channel"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(
            f"samples must be floats in [-1, 1) (libsndfile scale), got dtype {samples.dtype}; "
            "read audio with soundfile.read(path, dtype='float32')"
        )
    num_frames(samples.size)
    samples = samples.astype(np.float32, copy=False)
    if not np.all(np.isfinite(samples)):
        bad = int(np.flatnonzero(~np.isfinite(samples))[0])
        raise ValueError(f"samples contain NaN or inf (first at index {bad}: {samples[bad]})")
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:
        raise ValueError(
            f"samples must lie in [-1, 1) (libsndfile float scale), got peak {peak}; "
            "integer-scaled audio must be divided by 32768"
        )
    return samples


def _frames(samples: np.ndarray) -> np.ndarray:
    """Overlapping frames (T, 400) float32 of the 32768-scaled samples, pre-emphasised and windowed."""
    x = samples * np.float32(SCALE)  # exact: a power of two
    t = num_frames(x.size)
    # A strided view, then one copy: no Python loop over frames.
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME_LENGTH)[::FRAME_SHIFT][:t]
    pre = np.empty_like(frames)
    # Backwards in-place pre-emphasis reads only original values: x[i] - c x[i-1].
    pre[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
    pre[:, 0] = frames[:, 0] * (np.float32(1.0) - PREEMPHASIS)
    pre *= hamming_window(FRAME_LENGTH)
    return pre


def _fft64(samples: np.ndarray) -> np.ndarray:
    """Complex FFT (K, T) complex128 of the checked samples, before rounding to float32."""
    frames = _frames(samples)
    return np.fft.rfft(frames.astype(np.float64), n=FFT_SIZE, axis=1).T


def _interleave(spec: np.ndarray, dtype) -> np.ndarray:
    """Complex (K, T) -> interleaved real (2K, T) of the given dtype."""
    out = np.empty((2 * spec.shape[0], spec.shape[1]), dtype=dtype)
    out[0::2] = spec.real
    out[1::2] = spec.imag
    return out


def pow_fft(samples: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Interleaved FFT (514, T) float32 of 16 kHz mono samples (N,) float32 in [-1, 1).

    ``dtype=np.float64`` returns the FFT before it is rounded to float32 (the
    values the C++ takes the magnitudes of; see :func:`magnitude`).
    Other float dtypes are rounded to float32 first (the C++ reads floats).
    Raises ValueError for fewer than 400 samples, a non-1-D array, non-float
    or non-finite samples, or samples outside [-1, 1].
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return _interleave(_fft64(_check_samples(samples)), dtype)


def _check_fft(fft: np.ndarray) -> np.ndarray:
    """Validate an interleaved FFT (2K, T) and return it as an array."""
    fft = np.asarray(fft)
    if fft.ndim == 1:
        fft = fft[:, None]  # ArrayFire orientation drops a trailing T = 1
    if fft.ndim != 2 or fft.shape[0] != 2 * NUM_BINS:
        raise ValueError(
            f"interleaved FFT must have shape ({2 * NUM_BINS}, T) (2K x T), got {fft.shape}"
        )
    if not np.issubdtype(fft.dtype, np.floating):
        raise ValueError(f"interleaved FFT must be float32 or float64, got dtype {fft.dtype}")
    return fft


def magnitude(fft: np.ndarray) -> np.ndarray:
    """Magnitudes (257, T) float32 of an interleaved FFT (514, T): sqrt(Re^2 + Im^2) in double.

    The C++ feature code takes the square root of its double FFT output. Given
    the float32 FFT (what :func:`pow_fft` returns and the C++ stores), the
    result can differ from the C++ magnitudes by 1 ulp (about a fifth of the
    values); given ``pow_fft(samples, dtype=np.float64)`` it matches bit for bit.
    """
    f = _check_fft(fft).astype(np.float64, copy=False)
    return np.sqrt(f[0::2] * f[0::2] + f[1::2] * f[1::2]).astype(np.float32)


def _arrayfire_cpu_mean(values: np.ndarray) -> np.float32:
    """af::mean<float> on ArrayFire's CPU backend: a float32 running mean in column-major order."""
    v = values.ravel(order="F")
    count = np.arange(1, v.size + 1, dtype=np.float32)  # exact below 2**24 elements
    old_scale = ((count - np.float32(1)) / count).tolist()  # runningCount / (runningCount + 1)
    new_term = ((np.float32(1) / count) * v).tolist()  # newScale * x, rounded as float32
    # mean = f32(f32(old_scale * mean) + new_term): products of two float32 values
    # are exact in double, and double rounding of + and * to float32 through
    # double is innocuous (53 >= 2*24 + 2), so Python floats plus one float32
    # rounding per operation replay the float32 arithmetic exactly.
    f32 = struct.Struct("<f")
    pack, unpack = f32.pack, f32.unpack
    mean = 0.0
    for scale, term in zip(old_scale, new_term):
        mean = unpack(pack(unpack(pack(scale * mean))[0] + term))[0]
    return np.float32(mean)


def global_mean_stdev(values: np.ndarray, stats: str = "float64") -> tuple[np.float32, np.float32]:
    """Mean and population stdev over all elements of a float array, both as float32 scalars.

    ``stats="float64"`` (default): two passes in float64 (mean, then the mean of
    squared deviations), each result rounded once to float32.
    ``stats="arrayfire_cpu"``: what ``af::mean<float>`` / ``af::stdev<float>``
    give on ArrayFire's CPU backend (3.9): a float32 running mean
    ``m = (n-1)/n * m + (1/n) * x`` element by element in column-major order,
    then float32 deviations from it, their squares summed one at a time in
    float32, divided by N and square-rooted in float32. (The CUDA/OpenCL
    backends reduce in trees and give other float32 values.)
    """
    if stats not in STATS_MODES:
        raise ValueError(f"stats must be one of {STATS_MODES}, got {stats!r}")
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError(f"cannot take the mean of an empty array (shape {values.shape})")
    if stats == "float64":
        v = values.astype(np.float64)
        mean = v.mean()
        return np.float32(mean), np.float32(np.sqrt(np.mean((v - mean) ** 2)))
    v = values.astype(np.float32, copy=False)
    mean = _arrayfire_cpu_mean(v)
    dev = v - mean
    # np.cumsum accumulates sequentially (np.sum would sum pairwise).
    total = np.cumsum((dev * dev).ravel(order="F"), dtype=np.float32)[-1]
    return mean, np.sqrt(total / np.float32(v.size))


def network_input(mag: np.ndarray, stats: str = "float64") -> np.ndarray:
    """Network input (T, 257) float32 from magnitudes (257, T): transposed, (f - mean) / stdev.

    mean and stdev are global over all T*K values (population stdev), from
    :func:`global_mean_stdev` with ``stats``: by default computed in float64 and
    rounded to float32; ``"arrayfire_cpu"`` replays the original's
    ``af::mean<float>`` / ``af::stdev<float>`` float32 accumulation on the CPU
    backend bit for bit. The subtraction and division then run in float32, as
    in ArrayFire. Raises ValueError for a constant input (stdev 0).
    """
    mag = np.asarray(mag)
    if mag.ndim == 1:
        mag = mag[:, None]  # ArrayFire orientation drops a trailing T = 1
    if mag.ndim != 2 or mag.shape[0] != NUM_BINS:
        raise ValueError(f"magnitudes must have shape ({NUM_BINS}, T) (K x T), got {mag.shape}")
    x = mag.T.astype(np.float32)
    mean, stdev = global_mean_stdev(x, stats)
    if not np.isfinite(stdev) or stdev == 0:
        raise ValueError(f"cannot normalise: stdev of the magnitudes is {stdev} (silent or constant input?)")
    return (x - mean) / stdev


def features(samples: np.ndarray, stats: str = "float64") -> dict[str, np.ndarray]:
    """All three stages for samples (N,) float32: "fft" (514, T), "magnitude" (257, T), "input" (T, 257), float32.

    "fft" and "magnitude" are the C++ feature code's values bit for bit (the
    magnitudes are taken of the unrounded double FFT); "input" uses
    :func:`network_input` with ``stats``.
    """
    spec = _fft64(_check_samples(samples))
    fft64 = _interleave(spec, np.float64)
    mag = magnitude(fft64)
    # column-major: the mask objective takes the FFT as it is (ArrayFire's layout) instead of copying it
    return {"fft": fft64.astype(np.float32, order="F"), "magnitude": mag, "input": network_input(mag, stats)}
