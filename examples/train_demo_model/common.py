"""Shared pieces of the demo-model training scripts: features, tokens, model.

Features, tokens and decoding come from afmask when its modules are there
(`afmask.features.stft`, `afmask.model.tokens`, `afmask.model.decode`), so the
model is trained on exactly what afmask feeds it at explain time; the private
copies below (written from DESIGN.md) are only a fallback for a checkout that
lacks them, and `check_afmask.py` compares the two.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

WORK = os.environ.get("DEMO_WORK", os.path.join(HERE, "work"))
SR = 16000
NFEAT = 257
NLABEL = 31
BLANK = 30
WIDTH = int(os.environ.get("DEMO_WIDTH", "128"))  # C in the arch file
KW = 8
N_CONV_STRIDE1 = 7

# ---------------------------------------------------------------- features


def _pow_fft_private(samples: np.ndarray) -> np.ndarray:
    """Interleaved unnormalised FFT of wav2letter "pow" frames: (N,) f32 -> (514, T) f32."""
    x = np.asarray(samples, dtype=np.float32) * np.float32(32768.0)
    n = x.shape[0]
    if n < 400:
        raise ValueError(f"need at least 400 samples, got {n}")
    t = 1 + (n - 400) // 160
    idx = np.arange(400)[None, :] + 160 * np.arange(t)[:, None]
    fr = x[idx].astype(np.float32)  # (T, 400)
    pre = np.float32(0.97)
    # Pre-emphasis applied backwards: x[i] -= 0.97 * x[i-1] on original values.
    fr[:, 1:] = fr[:, 1:] - pre * fr[:, :-1]
    fr[:, 0] = fr[:, 0] * (np.float32(1.0) - pre)
    win = (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)).astype(np.float32)
    fr = (fr * win).astype(np.float32)
    spec = np.fft.rfft(fr.astype(np.float64), n=512, axis=1)  # (T, 257)
    out = np.empty((514, t), dtype=np.float32)
    out[0::2] = spec.real.T
    out[1::2] = spec.imag.T
    return out


def _magnitude_private(fft: np.ndarray) -> np.ndarray:
    """Magnitudes of an interleaved FFT: (514, T) -> (257, T) f32."""
    re = fft[0::2].astype(np.float64)
    im = fft[1::2].astype(np.float64)
    return np.sqrt(re * re + im * im).astype(np.float32)


def _network_input_private(mag: np.ndarray) -> np.ndarray:
    """Transpose and globally normalise: (257, T) -> (T, 257) f32."""
    f = mag.T.astype(np.float32)
    mean = f.mean(dtype=np.float64)
    std = f.std(dtype=np.float64)
    return ((f - np.float32(mean)) / np.float32(std)).astype(np.float32)


try:
    from afmask.features.stft import magnitude, network_input, pow_fft  # noqa: F401
    FEATURES_FROM = "afmask.features.stft"
except Exception:  # pragma: no cover - fallback while afmask lacks them
    pow_fft, magnitude, network_input = _pow_fft_private, _magnitude_private, _network_input_private
    FEATURES_FROM = "private copy (examples/train_demo_model/common.py)"


def features(samples: np.ndarray) -> np.ndarray:
    """Network input of a waveform: (N,) f32 in [-1, 1) at 16 kHz -> (T, 257) f32."""
    return np.asarray(network_input(magnitude(pow_fft(samples))), dtype=np.float32)

# ------------------------------------------------------------------ tokens

TOKENS = ["|", "'"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["1", "2"]
assert len(TOKENS) == 30


def _encode_private(text: str) -> list:
    """Text -> target indices: surround and separate words with |, replabel=2."""
    words = text.split()
    letters = ["|"] + list("|".join(words)) + ["|"]
    out = []
    i = 0
    while i < len(letters):
        c = letters[i]
        j = i
        while j + 1 < len(letters) and letters[j + 1] == c and j - i < 2:
            j += 1
        out.append(TOKENS.index(c))
        if j > i:
            out.append(TOKENS.index(str(j - i)))
        i = j + 1
    return out


def _greedy_private(emissions: np.ndarray) -> str:
    """Greedy CTC decoding: (31, T') -> text."""
    best = np.argmax(emissions, axis=0)
    out = []
    prev = -1
    for b in best:
        if b != prev and b != BLANK:
            out.append(int(b))
        prev = b
    chars = []
    for t in out:
        tok = TOKENS[t]
        if tok in ("1", "2"):
            if chars and chars[-1] != " ":
                chars.extend([chars[-1]] * int(tok))
        else:
            chars.append(" " if tok == "|" else tok)
    return " ".join("".join(chars).split())


def _edit_distance(a, b) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _cer_private(hyp: str, ref: str) -> float:
    """Character error rate: edit distance / len(ref)."""
    return _edit_distance(hyp, ref) / max(1, len(ref))


try:
    from afmask.model.tokens import text_to_indices as _afmask_encode

    def encode(text: str) -> list:
        """Text -> CTC target indices (afmask.model.tokens.text_to_indices)."""
        return [int(i) for i in _afmask_encode(text)]
    TOKENS_FROM = "afmask.model.tokens"
except Exception:  # pragma: no cover
    encode = _encode_private
    TOKENS_FROM = "private copy"
try:
    from afmask.model.decode import cer, greedy_decode  # noqa: F401
    DECODE_FROM = "afmask.model.decode"
except Exception:  # pragma: no cover
    greedy_decode, cer = _greedy_private, _cer_private
    DECODE_FROM = "private copy"


def normalise_transcript(text: str) -> str:
    """Lowercase a-z/'/space, single spaces (as the sentence list)."""
    import re
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"[^a-z' ]+", " ", t)
    return " ".join(w.strip("'") for w in t.split() if w.strip("'"))

# ------------------------------------------------------------------- model


def same_pad(n: int, k: int, s: int) -> int:
    """flashlight SAME padding (each side) for input length n, kernel k, stride s."""
    r = s if n % s == 0 else n % s
    return ((k - 1) - r + 1 + 1) // 2


def out_len(t: int) -> int:
    """Output frames T' for T input frames (stride-2 conv then 7 stride-1 convs)."""
    n = (t + 2 * same_pad(t, KW, 2) - KW) // 2 + 1
    for _ in range(N_CONV_STRIDE1):
        n = n + 2 * same_pad(n, KW, 1) - KW + 1
    return n


ARCH = f"""V -1 1 NFEAT 0
C2 NFEAT {WIDTH} 8 1 2 1 -1 -1
R
""" + f"""C2 {WIDTH} {WIDTH} 8 1 1 1 -1 -1
R
""" * N_CONV_STRIDE1 + f"""RO 2 0 3 1
L {WIDTH} {2 * WIDTH}
R
L {2 * WIDTH} NLABEL
"""


def build_model(width: int = WIDTH):
    """The torch twin of the arch file (imports torch: training tools only)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class DemoW2L(nn.Module):
        """wav2letter conv stack with flashlight SAME padding, exact per utterance.

        forward(x, lengths): x (B, 257, W) where utterance b occupies
        x[b, :, pad_b : pad_b + T_b] with pad_b = same_pad(T_b, 8, 2) zeros
        before it and zeros after (see `batch_inputs`); returns logits
        (B, 31, T'max) and the output lengths T'_b. Activations past each
        utterance's end are zeroed after every layer, so each utterance's
        result equals the unbatched computation (SAME zero padding).
        """

        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv1d(NFEAT, width, KW, stride=2)
            self.convs = nn.ModuleList(nn.Conv1d(width, width, KW) for _ in range(N_CONV_STRIDE1))
            self.lin1 = nn.Linear(width, 2 * width)
            self.lin2 = nn.Linear(2 * width, NLABEL)
            # He initialisation: with torch's default (variance 1/(3 fan_in)) the signal
            # shrinks ~0.4x per ReLU layer and the input barely reaches the output of
            # this 10-layer stack without normalisation, which stalls CTC at the blank
            # plateau for thousands of steps.
            for m in (self.conv0, *self.convs, self.lin1):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

        def forward(self, x, lengths):
            n = torch.as_tensor([(int(t) + 2 * same_pad(int(t), KW, 2) - KW) // 2 + 1 for t in lengths])
            h = F.relu(self.conv0(x))
            h = h[:, :, : int(n.max())]
            ar = torch.arange(h.shape[2])
            h = h * (ar[None, :] < n[:, None]).to(h.dtype)[:, None, :]
            for conv in self.convs:
                p = same_pad(2, KW, 1)  # 4 for any n at stride 1
                h = F.relu(conv(F.pad(h, (p, p))))
                n = n + 1
                ar = torch.arange(h.shape[2])
                h = h * (ar[None, :] < n[:, None]).to(h.dtype)[:, None, :]
            h = h.transpose(1, 2)  # (B, T', C)
            h = self.lin2(F.relu(self.lin1(h)))
            return h.transpose(1, 2), n

    return DemoW2L()


def load_flashlight_params(model, params_path: str) -> None:
    """Copy an exported demo_params.af (flashlight order, ArrayFire layout) into the torch twin, in place."""
    import torch
    from afmask.io import read_arrays
    arrays = read_arrays(params_path)
    params = [arrays[k] for k in sorted(arrays)]
    convs = [model.conv0, *model.convs]
    if len(params) != 2 * (len(convs) + 2):
        raise ValueError(f"{params_path}: {len(params)} arrays, expected {2 * (len(convs) + 2)}")
    with torch.no_grad():
        for i, conv in enumerate(convs):
            w, b = params[2 * i], params[2 * i + 1]  # (kw, 1, cin, cout), (1, 1, cout)
            want = (conv.weight.shape[2], 1, conv.weight.shape[1], conv.weight.shape[0])
            if w.shape != want:
                raise ValueError(f"{params_path}: array {2 * i} has shape {w.shape}, expected {want} (width?)")
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(w[:, 0], (2, 1, 0)))))
            conv.bias.copy_(torch.from_numpy(b.reshape(-1)))
        for j, lin in enumerate((model.lin1, model.lin2)):
            w, b = params[2 * (len(convs) + j)], params[2 * (len(convs) + j) + 1]
            if w.shape != tuple(lin.weight.shape):
                raise ValueError(f"{params_path}: linear weight {w.shape}, expected {tuple(lin.weight.shape)}")
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b.reshape(-1)))


def params_width(params_path: str) -> int:
    """The width C of an exported demo_params.af (its first convolution's output channels)."""
    from afmask.io import read_arrays
    arrays = read_arrays(params_path)
    return int(arrays[sorted(arrays)[0]].shape[-1])


def widen_from(model, params_path: str) -> None:
    """Load narrower exported weights into a wider torch twin so that it computes exactly the same function.

    Each layer's old units keep their weights; the new units keep their fresh (He) incoming weights, and every
    weight from a new unit into the next layer starts at 0, so the old units, and the output, see only old units
    until training moves those weights. Duplicating units instead (Net2WiderNet) leaves twins that get equal
    gradients and stay alike.
    """
    import torch
    small = build_model(params_width(params_path))
    load_flashlight_params(small, params_path)
    pairs = list(zip([small.conv0, *small.convs, small.lin1, small.lin2], [model.conv0, *model.convs, model.lin1, model.lin2]))
    with torch.no_grad():
        for i, (a, b) in enumerate(pairs):
            o, n = a.weight.shape[0], a.weight.shape[1]
            if b.weight.shape[0] < o or b.weight.shape[1] < n:
                raise ValueError(f"{params_path}: layer {i} is {tuple(a.weight.shape[:2])}, wider than the model's")
            b.weight[:, n:] = 0.0  # from the new units of the layer below
            b.weight[:o, :n] = a.weight
            b.bias[:o] = a.bias


def batch_inputs(feats):
    """List of (T_b, 257) arrays -> torch (B, 257, W) with each utterance after its own SAME pad."""
    import torch
    pads = [same_pad(f.shape[0], KW, 2) for f in feats]
    width = max(p + f.shape[0] + p for p, f in zip(pads, feats))
    width += (-(width - KW)) % 2  # any extra is zeros; outputs are cut per utterance
    x = np.zeros((len(feats), NFEAT, width), dtype=np.float32)
    for b, (p, f) in enumerate(zip(pads, feats)):
        x[b, :, p: p + f.shape[0]] = f.T
    return torch.from_numpy(x), [f.shape[0] for f in feats]
