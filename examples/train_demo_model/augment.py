"""Waveform augmentation shared by make_data.py (synthetic) and real_data.py (recorded).

Room reverberation comes from a bank of room impulse responses simulated
once with pyroomacoustics (image source method in random shoebox rooms,
RT60 0.15..0.9 s) and cached as an .npz; the rest is NumPy/SciPy: speed
(with its pitch shift) by resampling, low-/high-/band-pass filters, coloured
noise at several SNRs, leading/trailing silence, level.
"""
import os

import numpy as np
from scipy import signal

SR = 16000


def make_rir_bank(path: str, n: int = 80, seed: int = 7) -> np.ndarray:
    """Simulated room impulse responses, cached at path: -> list of 1-D float32 arrays (peak 1, onset at 0)."""
    if os.path.exists(path):
        with np.load(path) as z:
            return [z[k] for k in sorted(z.files)]
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    rirs = []
    while len(rirs) < n:
        dims = np.array([rng.uniform(3, 10), rng.uniform(3, 8), rng.uniform(2.4, 4)])
        rt60 = rng.uniform(0.15, 0.9)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # RT60 impossible for this room size
            continue
        room = pra.ShoeBox(dims, fs=SR, materials=pra.Material(absorption), max_order=min(max_order, 20))
        src = [rng.uniform(0.5, d - 0.5) for d in dims]
        mic = [rng.uniform(0.5, d - 0.5) for d in dims]
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        h = h[max(0, int(np.argmax(np.abs(h))) - 16):]  # start just before the direct path
        h = h[: int(1.0 * SR)]
        rirs.append((h / np.max(np.abs(h))).astype(np.float32))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{f"rir_{i:04d}": h for i, h in enumerate(rirs)})
    os.replace(tmp, path)
    return rirs


def coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise of unit RMS: -> (n,) float64."""
    kind = rng.integers(3)
    w = rng.standard_normal(n)
    if kind > 0:
        spec = np.fft.rfft(w)
        f = np.arange(1, spec.shape[0] + 1, dtype=np.float64)
        spec /= f ** (0.5 * kind)
        w = np.fft.irfft(spec, n)
    return w / (np.sqrt(np.mean(w * w)) + 1e-12)


def augment(x: np.ndarray, rng: np.random.Generator, rirs=None, p_reverb: float = 0.4,
            p_noise: float = 0.7, snr=(5.0, 40.0), p_filter: float = 0.6, speed=(18, 23)) -> np.ndarray:
    """Speed, EQ, room reverb, silence, noise and gain: 16 kHz float (N,) -> 16 kHz float (M,)."""
    if rng.random() < 0.6:  # speed (and pitch) by 20/down
        down = int(rng.integers(*speed))
        if down != 20:
            x = signal.resample_poly(x, 20, down)
    r = rng.random() / max(p_filter, 1e-9) * 0.6
    if r < 0.25:
        sos = signal.butter(int(rng.integers(2, 7)), rng.uniform(2800, 7500), "lowpass", fs=SR, output="sos")
        x = signal.sosfilt(sos, x)
    elif r < 0.45:
        sos = signal.butter(2, rng.uniform(60, 400), "highpass", fs=SR, output="sos")
        x = signal.sosfilt(sos, x)
    elif r < 0.6:  # telephone-ish band
        sos = signal.butter(4, [rng.uniform(200, 400), rng.uniform(3200, 4000)], "bandpass", fs=SR, output="sos")
        x = signal.sosfilt(sos, x)
    if rirs and rng.random() < p_reverb:  # a simulated room
        h = rirs[int(rng.integers(len(rirs)))]
        x = signal.fftconvolve(x, h)[: x.shape[0] + SR // 4]
    lead, trail = (int(rng.uniform(0, 0.3) * SR) for _ in range(2))
    x = np.concatenate([np.zeros(lead), x, np.zeros(trail)])
    if rng.random() < p_noise:
        rms = np.sqrt(np.mean(x * x)) + 1e-9
        x = x + coloured_noise(x.shape[0], rng) * rms / 10 ** (rng.uniform(*snr) / 20)
    else:  # at least a little dither-level noise, as a microphone has
        x = x + rng.standard_normal(x.shape[0]) * 1e-5
    peak = np.max(np.abs(x)) + 1e-12
    return x * (10 ** rng.uniform(-1.3, -0.05) / peak)


def quantise(x: np.ndarray) -> np.ndarray:
    """float -> int16 samples (clipped)."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
