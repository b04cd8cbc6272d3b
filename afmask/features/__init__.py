"""wav2letter "pow" features (STFT, magnitudes, normalisation) and their least-squares inverse, in NumPy."""

from .inverse import fft_from_magnitude, istft
from .stft import (
    FFT_SIZE,
    FRAME_LENGTH,
    FRAME_SHIFT,
    NUM_BINS,
    SAMPLE_RATE,
    features,
    global_mean_stdev,
    magnitude,
    network_input,
    num_frames,
    pow_fft,
)

__all__ = [
    "FFT_SIZE",
    "FRAME_LENGTH",
    "FRAME_SHIFT",
    "NUM_BINS",
    "SAMPLE_RATE",
    "features",
    "fft_from_magnitude",
    "global_mean_stdev",
    "istft",
    "magnitude",
    "network_input",
    "num_frames",
    "pow_fft",
]
