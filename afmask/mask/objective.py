"""The experiment's objective: perturb the FFT, run the recogniser, compare post-processed outputs.

One iteration (notes, Part 1-3): ``x~ = x + e*m`` -> magnitudes ``|x~|`` (K x T)
-> transpose -> global normalisation with the population stdev (T x K) -> model
-> post-processing -> ``f = ||pre - cur||_F^2``. Its gradient with respect to
``m`` is computed either by the note's hand-written formulas (batch-norm style
backward through the normalisation, then ``xGrad(j/2) * (e*e*m + e*x) / |x~|``
through the magnitudes, by the fused kernel) or by afmask.fl's autograd
through the whole pipeline; the tests check that both agree with each other
and with finite differences.

Several noise samples (S) are batched along dim 3 of the network input
(T x K x 1 x S), so the model sees them as a batch; ``f`` is their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from afmask import fl
from afmask.backend import Backend, get_backend, threads
from afmask.backend.workspace import POOL
from afmask.features.stft import global_mean_stdev
from afmask.fl import Variable, seq, span
from afmask.fl.nn import Module
from afmask.kernels import mask_step
from afmask.mask import noise
from afmask.mask.config import ATTENUATIONS, DROP_BELOW, NOISES
from afmask.mask.postprocess import postprocess

#: Frames times samples one network pass takes at most: past it a longer batch only adds memory (the GEMMs are
#: as fast), so long utterances run their noise samples in several passes.
MAX_BATCH_FRAMES = 8192
#: On the ext path, the network input's statistics and normalisation and the normalisation's backward run in the
#: extension too (the same float32 operations; tests compare both ways).
EXT_PASSES = True


def fortran(backend: Backend, a: Any) -> Any:
    """``a`` in column-major memory, the layout the fused kernel reads (no-op on ArrayFire)."""
    if backend.name == "numpy":
        return np.asfortranarray(a)
    if backend.name == "cupy":
        return backend.xp.asfortranarray(a)
    return a


def _leaf(data: Any, backend: Backend, calc_grad: bool) -> Variable:
    v = Variable._leaf(data, backend)
    v.setCalcGrad(calc_grad)
    return v


@dataclass
class Centred:
    """trInput - mean without a full-size copy: the magnitudes (K, T, S), each sample's float64 mean and sum."""

    mag: Any
    mean: np.ndarray
    sum: np.ndarray


def normalisation_coefficients(sd: np.ndarray, sdx: np.ndarray, centred: Centred, stdev: Any, n: float,
                               scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, the float64 (a, b, c) of the normalisation's backward ``dx = a*dy + b*x + c`` from the sums
    ``sd = sum(dy)`` and ``sdx = sum(dy * x)`` over its N = T*K values (times ``scale``)."""
    mean, sigma = np.asarray(centred.mean, np.float64), np.asarray(stdev, np.float64)
    sdc = np.asarray(sdx, np.float64) - mean * sd  # sum(dy * (x - mean))
    sc = np.asarray(centred.sum, np.float64) - n * mean  # sum(x - mean)
    dsigma2 = sdc * -0.5 * (sigma * sigma) ** -1.5
    dmu = sd * (-1.0 / sigma) + sc * -2.0 * dsigma2 / n
    b = scale * dsigma2 * 2.0 / n
    return scale / sigma, b, scale * dmu / n - b * mean


@dataclass
class Forward:
    """What one forward pass keeps for the hand-written backward."""

    m: Any  # the noise scale used, (2K, T), column-major
    eps: Any  # noise e, (2K, T[, S]); already scaled (absolute: fftstdev, relative: |x_k|)
    mag: Any  # |x~|, (K, T[, S])
    centred: Any  # trInput - mean, (T, K[, S]), or a Centred record (NumPy/CuPy)
    stdev: Any  # population stdev per sample, (1, 1[, S]), or (S,) float64 on the host (NumPy/CuPy)
    input: Variable  # normalised network input, (T, K, 1[, S]), calcGrad
    output: Variable  # network output, (31, T'[, S])
    current: Variable  # post-processed output
    f: Variable  # mean over samples of ||pre - cur||_F^2 (scalar)


class MaskObjective:
    """The objective for one utterance and one recogniser; holds the clean FFT and the clean output."""

    def __init__(
        self,
        fft: np.ndarray,
        model: Module,
        variant: str = "letters",
        noise: str = "absolute",
        stats: str = "float64",
        clean_input: Optional[np.ndarray] = None,
        backend: Optional[Backend] = None,
        kernel_path: str = "auto",
        dtype: Any = np.float32,
    ):
        """``fft``: clean interleaved FFT (2K, T) float32; ``clean_input``: the clean network input (T, K), if the
        features were computed separately (the C++ used the magnitudes of its double FFT); else from ``fft``.
        ``dtype`` float32 runs the fused kernel; float64 (for gradient checks) runs the same maths as whole-array
        expressions, and the model's parameters must then be float64 too."""
        fft = np.asarray(fft)
        if fft.ndim != 2 or fft.shape[0] % 2:
            raise ValueError(f"the clean FFT must be (2K, T) with interleaved Re/Im rows, got shape {fft.shape}")
        if not np.all(np.isfinite(fft)):
            raise ValueError("the clean FFT holds NaN or Inf")
        if noise not in NOISES:
            raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
        self.B = backend or get_backend()
        threads.ensure(self.B.name)  # afmask's BLAS/OpenMP threads, chosen once per process (one on ArrayFire)
        self.model = model
        self.variant, self.noise, self.stats = variant, noise, stats
        #: whether the noise scales each bin's magnitude by (1 - m*u): u ~ U(0, 1) ("attenuate") or 0/1 ("drop")
        self.attenuates = noise in ATTENUATIONS
        self.K, self.T = fft.shape[0] // 2, fft.shape[1]
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        host = np.asfortranarray(fft, dtype=np.float32)
        self.x = fortran(self.B, self.B.asarray(host.astype(self.dtype, copy=False)))
        if self.dtype != np.float32:
            self.kernel_path = "generic"
        else:
            self.kernel_path = mask_step.best_path(self.B.name) if kernel_path == "auto" else kernel_path
        # whether the extension's passes may run on ArrayFire's buffers (fixed for the objective's life: asking
        # ArrayFire for its active backend at every pass of every iteration was a call into it each time)
        self._af_host = (self.kernel_path == "ext" and self.B.name == "arrayfire" and self.dtype == np.float32
                         and stats != "arrayfire_cpu" and self.B.active_backend() == "cpu")
        if self._af_ext() is not None:
            # in a buffer only the host writes: the host passes read it without waiting for ArrayFire
            self.x, xv = self.B.empty_host(host.shape)
            xv[:, :, 0, 0] = host
        # af::stdev<float> of the clean FFT: the scale of the original's absolute noise
        self.fftstdev = float(global_mean_stdev(host, stats=stats)[1])
        # the features' own helpers fix K = 257; the objective takes any K (small test networks)
        clean_mag = np.sqrt(host[0::2].astype(np.float64) ** 2 + host[1::2].astype(np.float64) ** 2).astype(np.float32)
        self.clean_magnitude = clean_mag  # (K, T) float32
        # x~ = x + eps*m with eps = -u*x per row for attenuation (the bin scaled by (1 - m*u), both rows by the
        # same u): its scale -x is made only where a path asks for it (see noise_scale), not a second FFT-sized
        # array on NumPy/CuPy
        self._noise_scale = None
        if noise == "relative":
            self._noise_scale = self.B.asarray(np.asfortranarray(np.repeat(clean_mag, 2, axis=0), dtype=self.dtype))
        model.eval()
        if clean_input is None:
            mean, stdev = global_mean_stdev(clean_mag, stats=stats)
            clean_input = (clean_mag.T - mean) / stdev
        self.clean_input = np.asarray(clean_input, dtype=self.dtype)
        if self.clean_input.shape != (self.T, self.K):
            raise ValueError(f"clean input must be (T, K) = ({self.T}, {self.K}), got {self.clean_input.shape}")
        self.clean_output = model(Variable(self.B.asarray(self.clean_input), False))
        if self.clean_output.dims(0) != 31:
            raise ValueError(f"the model must give 31 x T' outputs, got {self.clean_output.dims()}")
        self.pre = postprocess(self.clean_output, variant)
        self._pre_tiled: dict[int, Variable] = {}
        self._scale_tiled: dict[int, Any] = {}

    # -- pieces ----------------------------------------------------------------------------
    @property
    def noise_scale(self) -> Any:
        """What the random numbers are multiplied by (2K, T): None (absolute), |x_k| (relative), -x (attenuate)."""
        if self._noise_scale is None and self.attenuates:
            self._noise_scale = fortran(self.B, -self.x)
        return self._noise_scale

    def draw_noise(self, seed: int, samples: int = 1, generator: str = "host") -> Any:
        """Noise e (2K, T[, S]) float32, column-major: N(0, fftstdev^2) (absolute), N(0, 1) * |x_k| (relative) or
        -u * x with u ~ U(0, 1) per bin (attenuate) or u = 0 or 1 with probability 1/2 each (drop).

        ``generator``: "host" (the same draws on every backend) or "device" (see afmask.mask.noise)."""
        if generator == "host" and self.attenuates and self._af_ext() is not None:
            return self.noise_from_host(self.draw_raw_host(seed, samples), samples)
        return self.noise_from(self.draw_raw(seed, samples, generator), samples)

    def noise_from_host(self, raw: np.ndarray, samples: int) -> Any:
        """:meth:`noise_from` for host draws (NumPy arrays, those of :meth:`draw_raw_host`), on the backend; on
        ArrayFire's CPU backend attenuation noise is written by the extension straight into ArrayFire's buffer
        (the same products as NumPy's, no copy of u and no tiled pair of rows)."""
        ext = self._af_ext() if self.attenuates else None
        if ext is None:
            return self.noise_from(self.B.asarray(raw), samples)
        eps, ev = self.B.empty_host((2 * self.K, self.T, samples))
        keep, (xv,) = self.B.host_views(self.x)
        ext.attenuate(np.asfortranarray(raw, np.float32), xv[:, :, 0, 0], ev[:, :, :, 0] if samples > 1 else ev[:, :, 0, 0])
        del keep
        return eps if samples > 1 else self.B.af.moddims(eps, 2 * self.K, self.T)

    def draw_raw(self, seed: int, samples: int = 1, generator: str = "host") -> Any:
        """The random numbers behind :meth:`draw_noise`: u (K, T[, S]) for attenuation, else N(0, 1) (2K, T[, S])."""
        if self.attenuates:
            return self.factor(noise.uniform(self.B, self.K, self.T, samples, seed, self.dtype, generator))
        return noise.standard_normal(self.B, 2 * self.K, self.T, samples, seed, self.dtype, generator)

    def draw_raw_host(self, seed: int, samples: int = 1) -> np.ndarray:
        """The host generator's numbers behind :meth:`draw_raw` as NumPy arrays, before any copy to a device."""
        if self.attenuates:
            return self.factor(noise.host_uniform(self.K, self.T, samples, seed, self.dtype))
        return noise.host_standard_normal(2 * self.K, self.T, samples, seed, self.dtype)

    def factor(self, u: Any) -> Any:
        """Attenuation's factors from U(0, 1) draws u: u itself ("attenuate"), or 1 where u < 1/2 and 0 elsewhere
        ("drop"), in place where u is a writeable NumPy array."""
        if self.noise != "drop":
            return u
        if isinstance(u, np.ndarray) and u.flags.writeable:
            return np.less(u, DROP_BELOW, out=u, casting="unsafe")
        return self.B.astype(u < DROP_BELOW, self.dtype)

    def noise_from(self, raw: Any, samples: int) -> Any:
        """The noise e of :meth:`draw_noise` from its random numbers ``raw`` (those of :meth:`draw_raw`)."""
        B = self.B
        xp = getattr(B, "xp", None)
        if self.attenuates and xp is not None:
            ext = self._ext_arrays(raw, self.x)
            if ext is not None:  # the same products in one pass, into a reused buffer
                eps = POOL.take(np, (samples, self.T, 2 * self.K), np.float32).transpose(2, 1, 0)
                if np.ndim(raw) == 2:
                    eps = eps[:, :, 0]
                ext.attenuate(raw, self.x, eps)
                return B._canon(eps)
            # e = -(u * x) written once: u (1, K, T, S) broadcast over the pair of rows of x (2, K, T, 1), so no
            # tiled copy of u and no second full-size array (negating in place is exact: u * (-x) bit for bit)
            eps = xp.empty((2 * self.K, self.T, samples), self.dtype, order="F")
            out = eps.reshape((2, self.K, self.T, samples), order="F")
            xp.multiply(raw.reshape((1, self.K, self.T, samples), order="F"),
                        self.x.reshape((2, self.K, self.T, 1), order="F"), out=out)
            xp.negative(out, out=out)
            return B._canon(eps)
        if self.attenuates:
            # one u per bin for both its rows (moddims of a 2 x K x T x S tile interleaves them): the pair is scaled
            # together, so its phase is kept and only its magnitude changes
            if B.name == "arrayfire":
                # the same pairs as an outer product with (1, 1): exact, and 8x faster than ArrayFire's CPU tile
                # along dim 0
                af = B.af
                pair = af.matmul(af.constant(1, 2, 1, dtype=raw.dtype()), af.moddims(raw, 1, self.K * self.T * samples))
            else:
                pair = B.tile(B.moddims(raw, (1, self.K, self.T, samples)), (2, 1, 1, 1))
            raw = B.moddims(pair, (2 * self.K, self.T, samples) if samples > 1 else (2 * self.K, self.T))
        if self.noise_scale is None:
            return fortran(B, raw * self.dtype.type(self.fftstdev))
        if xp is not None and getattr(raw.flags, "writeable", True):
            # the fresh draws scaled in place, broadcasting the scale (|x_k|) over the samples: no tiled copy
            raw4 = B._4d(raw)
            raw4 *= B._4d(self.noise_scale)
            return fortran(B, raw)
        if samples not in self._scale_tiled:
            tiled = self.noise_scale if samples == 1 else B.tile(self.noise_scale, (1, 1, samples))
            self._scale_tiled[samples] = fortran(B, tiled)
        return fortran(B, raw * self._scale_tiled[samples])

    def pre_for(self, samples: int) -> Variable:
        """The clean post-processed output repeated for S samples."""
        if samples == 1:
            return self.pre
        if samples not in self._pre_tiled:
            d = self.pre.dims()
            self._pre_tiled[samples] = Variable(self.B.tile(self.pre.array(), (1, 1, samples)), False) if d[2] == 1 else self.pre
        return self._pre_tiled[samples]

    def network_input(self, mag: Any) -> tuple[Any, Any, Any]:
        """Normalised network input (T, K, 1[, S]) from magnitudes (K, T[, S]); also trInput - mean and stdev.

        On NumPy/CuPy arrays (stats "float64") each sample's mean and population stdev are float64 and the
        normalisation runs in float64, rounded once; the input is laid out time-major (T, S, K in memory),
        the layout the network's convolution reads, and no per-sample scalar is tiled to full size. The
        "centred" part is then a :class:`Centred` record (the magnitudes and the means), not a copy.
        """
        if self.stats != "arrayfire_cpu" and getattr(self.B, "xp", None) is not None:
            return self._network_input_xp(mag)
        if self.stats != "arrayfire_cpu" and self.B.name == "arrayfire":
            return self._network_input_af(mag)
        B = self.B
        d = B.dims(mag)
        S = d[2]
        tr = B.reorder(mag, (1, 0, 2, 3))  # T x K x S
        if self.stats == "arrayfire_cpu":
            host = B.to_numpy(tr)
            mean, stdev = global_mean_stdev(host, stats="arrayfire_cpu")
            centred = B.asarray(host - mean)
            stdev_arr = B.asarray(np.array([stdev], np.float32))
            inp = B.asarray((host - mean) / stdev)
        else:
            tr64 = B.astype(tr, np.float64)  # float64 statistics, as the setting says
            mean = B.mean(tr64, [0, 1])
            centred64 = tr64 - B.tile(mean, (self.T, self.K, 1))
            stdev64 = B.sqrt(B.mean(centred64 * centred64, [0, 1]))
            inp = B.astype(centred64 / B.tile(stdev64, (self.T, self.K, 1)), self.dtype)
            centred, stdev_arr = B.astype(centred64, self.dtype), B.astype(stdev64, self.dtype)
        if S > 1:
            inp = B.moddims(inp, (self.T, self.K, 1, S))
        return inp, centred, stdev_arr

    def _network_input_xp(self, mag: Any, stats: Optional[tuple] = None) -> tuple[Any, "Centred", np.ndarray]:
        """:meth:`network_input` on NumPy/CuPy arrays; ``stats``: each sample's float64 sum and sum of squares of
        ``mag`` if already known (the extension's forward accumulates them)."""
        B = self.B
        xp = B.xp
        S = B.dims(mag)[2]
        m3 = B._4d(mag)[:, :, :, 0]  # (K, T, S)
        buf = POOL.take(xp, (self.T, S, self.K), self.dtype)  # time-major: one GEMM per tap reads all samples
        n = float(self.T * self.K)
        means, stdevs, sums = np.empty(S), np.empty(S), np.empty(S)
        ext = self._ext_arrays(mag)
        for s in range(S):
            x = m3[:, :, s].T  # (T, K)
            # float64 sums (single passes over the float32 values, no float64 copy); the magnitudes are >= 0,
            # so E[x^2] - mean^2 loses nothing in float64
            if stats is not None:
                sx, sq = float(stats[0][s]), float(stats[1][s])
            else:
                sx, sq = float(x.sum(dtype=np.float64)), float(xp.einsum("ij,ij->", x, x, dtype=np.float64))
            mean = sx / n
            var = sq / n - mean * mean
            stdev = math.sqrt(max(var, 0.0))
            if not stdev > 0:
                raise ValueError(f"the perturbed magnitudes of sample {s} are constant (stdev {stdev}): cannot normalise")
            if ext is None:
                out = buf[:, s, :]
                xp.subtract(x, mean, out=out)
                out /= stdev
            means[s], stdevs[s], sums[s] = mean, stdev, sx
        if ext is not None:  # the same float32 subtract and divide, all samples in one pass
            ext.normalise(mag, buf.transpose(0, 2, 1), means.tolist(), stdevs.tolist())
        inp = buf.transpose(0, 2, 1)[:, :, None, :]  # (T, K, 1, S) view
        return B._canon(inp), Centred(mag, means, sums), stdevs

    def _ext_arrays(self, *arrays: Any) -> Any:
        """The extension, where it may take these arrays (NumPy float32, column-major, the ext path); else None."""
        if not EXT_PASSES or self.kernel_path != "ext" or self.B.name != "numpy" or self.dtype != np.float32:
            return None
        if not all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.f_contiguous for a in arrays):
            return None
        return mask_step.extension()

    def _af_ext(self) -> Any:
        """The extension, where its passes may run on this objective's ArrayFire arrays in place (the CPU backend,
        whose buffers are host memory; float32, the ext path, NumPy statistics); else None."""
        return mask_step.extension() if EXT_PASSES and self._af_host else None

    def _af_magnitudes_stats(self, ext: Any, m: Any, eps: Any) -> tuple[Any, tuple]:
        """:meth:`_magnitudes_stats` on ArrayFire's CPU backend: the extension's pass on its buffers."""
        B = self.B
        S = B.dims(eps)[2]
        mag, mv = B.empty_host((self.K, self.T, S))
        keep, (xv, ev, m4) = B.host_views(self.x, eps, m)
        bad, sums, squares = ext.forward_stats(xv[:, :, 0, 0], ev[:, :, :, 0] if S > 1 else ev[:, :, 0, 0],
                                               m4[:, :, 0, 0], mv[:, :, :, 0] if S > 1 else mv[:, :, 0, 0])
        del keep
        if bad:
            mask_step._raise_nonfinite(bad, "forward")
        return (mag if S > 1 else B.af.moddims(mag, self.K, self.T)), (sums, squares)

    def _magnitudes_stats(self, m: Any, eps: Any) -> tuple[Any, Optional[tuple]]:
        """:meth:`magnitudes` and, on the ext path with NumPy statistics, each sample's float64 sum and sum of
        squares of them from the same pass (else None), into a reused buffer."""
        ext = self._ext_arrays(self.x, eps, m) if self.stats != "arrayfire_cpu" else None
        if ext is None:
            af_ext = self._af_ext()
            if af_ext is not None:
                return self._af_magnitudes_stats(af_ext, m, eps)
            return self.magnitudes(m, eps), None
        S = self.B.dims(eps)[2]
        mag = POOL.take(np, (S, self.T, self.K), np.float32).transpose(2, 1, 0)  # column-major (K, T, S)
        if np.ndim(eps) == 2:
            mag = mag[:, :, 0]
        bad, sums, squares = ext.forward_stats(self.x, eps, m, mag)
        if bad:
            mask_step._raise_nonfinite(bad, "forward")
        return mag, (sums, squares)

    def _per_sample_sums(self, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
        """ArrayFire: per sample s, the float64 sums over dims 0-1 of ``a`` and of ``a * b`` (K, T[, S]), on the
        host: one float64 GEMM with a row of ones (3x faster than ArrayFire's CPU reductions) and one transfer."""
        af = self.B.af
        S = self.B.dims(a)[2]
        n = self.K * self.T
        x = af.moddims(a, n, S).as_type(af.Dtype.f64)
        ones = self.B.ones_row(n, np.float64)
        # two GEMMs reading the float32 arrays through the cast (joining the two first copied 8 MB)
        both = af.join(1, af.matmul(ones, x), af.matmul(ones, x * af.moddims(b, n, S).as_type(af.Dtype.f64)))
        sums = np.asarray(both.to_ndarray(), np.float64).reshape(2 * S)
        return sums[:S], sums[S:]

    def _per_sample_affine(self, dims: tuple, fn: Any) -> Any:
        """ArrayFire: a new (d0, d1, S) array whose slice s is ``fn(s)`` (an expression with Python-number
        constants), each written in place: 3x faster there than one broadcast expression."""
        out = self.B.af.Array(dims=tuple(int(v) for v in dims), dtype=self.B._afdtype(self.dtype))
        for s_ in range(dims[2]):
            out[:, :, s_] = fn(s_)
        return out

    def _network_input_af(self, mag: Any, stats: Optional[tuple] = None) -> tuple[Any, "Centred", np.ndarray]:
        # the NumPy path's arithmetic on ArrayFire: float64 sums per sample (a few numbers to the host), then
        # (x - mean) / stdev per sample with those numbers as constants, without tiling them: ArrayFire's CPU
        # tile and reductions were most of this step's time. ``stats``: the sums, if the magnitudes' pass made them
        B = self.B
        af = B.af
        S = B.dims(mag)[2]
        n = float(self.T * self.K)
        sums, squares = (np.asarray(stats[0], np.float64), np.asarray(stats[1], np.float64)) if stats else \
            self._per_sample_sums(mag, mag)
        means = sums / n
        stdevs = np.sqrt(np.maximum(squares / n - means * means, 0.0))
        for s_, sd in enumerate(stdevs):
            if not sd > 0:
                raise ValueError(f"the perturbed magnitudes of sample {s_} are constant (stdev {sd}): cannot normalise")
        if self._af_ext() is not None:
            # on the CPU backend NumPy writes the transposed input into ArrayFire's buffer: the same float32
            # subtract and divide, without ArrayFire's reorder and S indexed assignments
            inp, iv = B.empty_host((self.T, self.K, S))
            keep, (mv,) = B.host_views(mag)
            for j in range(S):
                out = iv[:, :, j, 0]
                np.subtract(mv[:, :, j, 0].T, float(means[j]), out=out)
                np.divide(out, float(stdevs[j]), out=out)
            del keep
            if S > 1:
                inp = af.moddims(inp, self.T, self.K, 1, S)
            return inp, Centred(mag, means, sums), stdevs
        tr = af.reorder(mag, 1, 0, 2, 3)  # (T, K, S)
        af.eval(tr)
        inp = self._per_sample_affine((self.T, self.K, S), lambda j: (tr[:, :, j] - float(means[j])) / float(stdevs[j]))
        if S > 1:
            inp = af.moddims(inp, self.T, self.K, 1, S)
        return inp, Centred(mag, means, sums), stdevs

    def distance(self, current: Variable, samples: int, pre: Optional[Variable] = None) -> Variable:
        """Mean over samples of ``||pre - cur||_F^2``; ``pre`` defaults to the clean output.

        The original computes ``f_L2 = fl::norm(pre - cur, {0,1}); f_L2 * f_L2``; the sum of squares here is
        the same value (to rounding) but its gradient is 0, not NaN (0/0 in norm's backward), where cur == pre.
        """
        d = (self.pre_for(samples) if pre is None else pre) - current
        if self.stats == "float64" and self.dtype == np.float32:
            # summed in float64 and rounded once (the gradient is the same): the float32 sum over T' x 31 terms was
            # most of f's error against a float64 reference, 1.4e-5 of 1.0e-5 allowed at T = 1593 on AVX2 kernels
            sq = fl.sum((d * d).astype(np.float64), [0, 1])
            return (fl.mean(sq, [2]) if samples > 1 else sq).astype(self.dtype)
        sq = fl.sum(d * d, [0, 1])
        return fl.mean(sq, [2]) if samples > 1 else sq

    # -- forward and the hand-written backward -----------------------------------------------
    def forward(self, m: Any, eps: Any) -> Forward:
        """Forward pass for noise scale ``m`` (2K, T) and noise ``eps``; the network input keeps its gradient."""
        B = self.B
        S = B.dims(eps)[2]
        m = fortran(B, m)
        mag, stats = self._magnitudes_stats(m, eps)
        if stats is None:
            inp, centred, stdev = self.network_input(mag)
        elif self.B.name == "arrayfire":
            inp, centred, stdev = self._network_input_af(mag, stats)
        else:
            inp, centred, stdev = self._network_input_xp(mag, stats)
        input_var = _leaf(inp, B, True)
        output = self.model(input_var)
        current = postprocess(output, self.variant)
        f = self.distance(current, S)
        return Forward(m, eps, mag, centred, stdev, input_var, output, current, f)

    def input_gradient(self, fw: Forward) -> Any:
        """``dL/d|x~|`` (K, T[, S]) from the gradient at the network input of a forward pass that has run backward."""
        return self.normalisation_backward(fw.input.grad().array(), fw.centred, fw.stdev)

    def normalisation_backward(self, dy: Any, centred: Any, stdev: Any, scale: float = 1.0) -> Any:
        """``dL/d|x~|`` (K, T[, S]) from ``dy`` (T, K[, 1, S]) by the note's batch-norm style backward through the
        global normalisation (times ``scale``).

        sigma2 = stdev^2; dsigma2 = sum(dy*(x-mu))*(-0.5)*sigma2^-1.5;
        dmu = sum(dy*(-1/sigma)) + sum(-2*(x-mu))*dsigma2/N; dx = dy/sigma + dsigma2*2*(x-mu)/N + dmu/N,
        sums over all T*K values of each sample (N = T*K).
        """
        if isinstance(centred, Centred):
            if getattr(self.B, "xp", None) is None:
                return self._normalisation_backward_af(dy, centred, stdev, scale)
            return self._normalisation_backward_xp(dy, centred, stdev, scale)
        B = self.B
        S = B.dims(centred)[2]
        if S > 1:
            dy = B.moddims(dy, (self.T, self.K, S))
        n = self.dtype.type(self.T * self.K)
        tile = lambda a: B.tile(a, (self.T, self.K, 1))  # noqa: E731 - per-sample scalars over T x K
        c, sigma = centred, stdev
        sigma2 = sigma * sigma
        # the C++ lines, in their order of operations
        dsigma2 = B.sum(dy * c * self.dtype.type(-0.5) * tile(sigma2 ** self.dtype.type(-1.5)), [0, 1])
        dmu = B.sum(dy * tile(self.dtype.type(-1.0) / sigma), [0, 1]) + B.sum(c * self.dtype.type(-2), [0, 1]) * dsigma2 / n
        dx = dy / tile(sigma) + tile(dsigma2 * self.dtype.type(2)) * c / n + tile(dmu / n)
        if scale != 1.0:
            dx = dx * self.dtype.type(scale)
        return fortran(B, B.reorder(dx, (1, 0, 2, 3)))

    def _normalisation_backward_xp(self, dy: Any, centred: "Centred", stdev: np.ndarray, scale: float) -> Any:
        # the same formulas per sample with every sum in float64 (sum(dy*c) = sum(dy*x) - mean*sum(dy)), then
        # dx = a*dy + b*(x - mean) + dmu/N element-wise, written once into the kernel's layout
        B = self.B
        xp = B.xp
        S = len(centred.mean)
        m3 = B._4d(centred.mag)[:, :, :, 0]
        dy4 = B._4d(dy)
        out = POOL.take(xp, (S, self.T, self.K), self.dtype)  # column-major (K, T, S): what the kernel reads
        n = float(self.T * self.K)
        ext = self._ext_arrays(centred.mag)
        d3 = dy4[:, :, 0, :] if dy4.shape[2] == 1 else dy4[:, :, :, 0]  # (T, K, S)
        if ext is not None and isinstance(dy, np.ndarray) and dy.dtype == np.float32 and (self.K == 1 or d3.strides[1] == 4):
            # the same sums and float32 operations as below, in two passes of the extension
            sds, sdxs = ext.grad_stats(d3, centred.mag)
            a, b, c = normalisation_coefficients(np.asarray(sds), np.asarray(sdxs), centred, stdev, n, scale)
            xg = out.transpose(2, 1, 0)
            ext.norm_backward(d3, centred.mag, xg if centred.mag.ndim == 3 else xg[:, :, 0], a.tolist(), b.tolist(),
                              c.tolist())
            return B._canon(xg)
        tmp = POOL.take(xp, (self.T, self.K), self.dtype)
        xs = [m3[:, :, s].T for s in range(S)]
        ds = [dy4[:, :, 0, s] if dy4.shape[2] == 1 else dy4[:, :, s, 0] for s in range(S)]
        sd = np.array([float(d.sum(dtype=np.float64)) for d in ds])
        sdx = np.array([float(xp.einsum("ij,ij->", d, x, dtype=np.float64)) for d, x in zip(ds, xs)])
        a, b, c = normalisation_coefficients(sd, sdx, centred, stdev, n, scale)
        for s in range(S):
            # Python floats: the float32 arrays' own precision (a NumPy float64 scalar would widen them)
            o = out[s]
            xp.multiply(ds[s], float(a[s]), out=o)
            xp.multiply(xs[s], float(b[s]), out=tmp)
            o += tmp
            o += float(c[s])
        return B._canon(out.transpose(2, 1, 0))

    def _normalisation_backward_af(self, dy: Any, centred: "Centred", stdev: np.ndarray, scale: float) -> Any:
        # the NumPy path's formulas (float64 sums per sample, float32 element-wise) on ArrayFire: dy is transposed
        # once to the magnitudes' (K, T, S) layout, where the result is written
        B = self.B
        af = B.af
        S = len(centred.mean)
        ext = self._af_ext()
        if ext is not None:
            return self._normalisation_backward_af_host(ext, dy, centred, stdev, scale)
        d = af.reorder(af.moddims(dy, self.T, self.K, S), 1, 0, 2, 3)  # (K, T, S)
        af.eval(d)
        sd, sdx = self._per_sample_sums(d, centred.mag)
        a, b, c = normalisation_coefficients(sd, sdx, centred, stdev, float(self.T * self.K), scale)
        x = af.moddims(centred.mag, self.K, self.T, S)
        out = self._per_sample_affine((self.K, self.T, S),
                                      lambda j: d[:, :, j] * float(a[j]) + x[:, :, j] * float(b[j]) + float(c[j]))
        return out if S > 1 else af.moddims(out, self.K, self.T)

    def _normalisation_backward_af_host(self, ext: Any, dy: Any, centred: "Centred", stdev: np.ndarray,
                                        scale: float) -> Any:
        # the NumPy ext path's two passes on ArrayFire's CPU buffers: dy transposed once by NumPy into the
        # magnitudes' (K, T, S) layout, which seen as (T, K, S) has K contiguous, as the passes read it
        B = self.B
        S = len(centred.mean)
        dt, dtv = B.empty_host((self.K, self.T, S))
        keep, (dv, mv) = B.host_views(dy, centred.mag)
        d3 = dv.reshape(self.T, self.K, S, order="F")
        for j in range(S):
            np.copyto(dtv[:, :, j, 0], d3[:, :, j].T)
        d_tks = dtv[:, :, :, 0].transpose(1, 0, 2)
        m3 = mv.reshape(self.K, self.T, S, order="F")
        sds, sdxs = ext.grad_stats(d_tks, m3 if S > 1 else m3[:, :, 0])
        a, b, c = normalisation_coefficients(np.asarray(sds), np.asarray(sdxs), centred, stdev,
                                             float(self.T * self.K), scale)
        out, ov = B.empty_host((self.K, self.T, S) if S > 1 else (self.K, self.T))
        ext.norm_backward(d_tks, m3 if S > 1 else m3[:, :, 0], ov[:, :, :, 0] if S > 1 else ov[:, :, 0, 0],
                          a.tolist(), b.tolist(), c.tolist())
        del keep, dt
        return out

    def data_gradient(self, fw: Forward) -> tuple[Any, float]:
        """``d f / d m`` (2K, T) by the hand-written backward and the fused kernel; also its squared norm."""
        fw.f.backward()
        S = self.B.dims(fw.eps)[2]
        if self.kernel_path != "generic" and S > 1:
            # the kernel's factor S (see magnitude_backward) folded into the normalisation's backward
            xgrad = self.normalisation_backward(fw.input.grad().array(), fw.centred, fw.stdev, scale=float(S))
            return self.magnitude_backward(xgrad, fw.eps, fw.m, fw.mag, scaled=True)
        return self.magnitude_backward(self.input_gradient(fw), fw.eps, fw.m, fw.mag)

    def noise_parts(self, seed: int, samples: int) -> "NoiseParts":
        """The attenuation noise of :meth:`draw_noise` (host generator) made one network pass at a time."""
        if not self.attenuates or getattr(self.B, "xp", None) is not np:
            raise ValueError("noise made pass by pass is for attenuation noise on the NumPy backend")
        return NoiseParts(self, seed, samples, self.samples_per_pass(samples))

    def samples_per_pass(self, samples: int) -> int:
        """How many of ``samples`` noise samples one network pass batches (all while the batch is short)."""
        return max(1, min(samples, MAX_BATCH_FRAMES // self.T))

    def value_and_gradient(self, m: Any, eps: Any) -> tuple[float, Any, float]:
        """``f``, ``d f / d m`` (2K, T) and its squared norm for noise ``eps`` (2K, T[, S], or :class:`NoiseParts`)
        by the hand-written backward, in passes of :meth:`samples_per_pass` samples each."""
        B = self.B
        xp = getattr(B, "xp", None)
        if isinstance(eps, NoiseParts):
            S, parts = eps.samples, iter(eps)
        else:
            S = B.dims(eps)[2]
            per = self.samples_per_pass(S) if xp is not None else S  # ArrayFire: one pass (no cheap slice of its arrays)
            if per >= S:
                fw = self.forward(m, eps)
                f = fw.f.scalar()
                g, g_sq = self.data_gradient(fw)
                return f, g, g_sq
            # column-major: each block of samples is contiguous
            parts = ((min(per, S - s0), B._canon(B._4d(eps)[:, :, s0 : s0 + per, 0])) for s0 in range(0, S, per))
        # f is the mean over all S samples: each pass's mean (over its own samples) weighs its share of them
        f, g = 0.0, None
        for n, part in parts:
            fw = self.forward(m, part)
            f += fw.f.scalar() * n / S
            gp, _ = self.data_gradient(fw)
            fw = part = None  # this pass's noise and activations go before the next pass makes its own
            w = self.dtype.type(n / S)
            if xp is not None and isinstance(gp, xp.ndarray):  # in place: two FFT-sized arrays at a time, not four
                gp *= w
                if g is None:
                    g = gp
                else:
                    g += gp
            else:
                g = gp * w if g is None else g + gp * w
            gp = None
        g = fortran(B, g)
        return f, g, B.total64(g, squares=True)

    def magnitude_backward(self, xgrad: Any, eps: Any, m: Any, mag: Any, scaled: bool = False) -> tuple[Any, float]:
        """``d f / d m`` (2K, T) from ``xgrad = dL/d|x~|`` (K, T[, S]) through ``|x + e*m|``; also its squared norm.

        ``scaled``: xgrad already carries the fused kernel's factor S."""
        S = self.B.dims(eps)[2]
        if self.kernel_path != "generic":
            # f is the mean over samples, so xgrad already carries 1/S; the kernel averages per-sample gradients
            if S > 1 and not scaled:
                xgrad = fortran(self.B, xgrad * np.float32(S))
            step = mask_step.backward(xgrad, self.x, eps, m, path=self.kernel_path)
            return step.mgrad, step.mgrad_sqnorm
        B = self.B
        d = B.dims(eps)
        xt = self._perturbed(m, eps)
        mag2 = B.moddims(B.tile(B.moddims(mag, (1, self.K, self.T, S)), (2, 1, 1, 1)), d)
        g2 = B.moddims(B.tile(B.moddims(xgrad, (1, self.K, self.T, S)), (2, 1, 1, 1)), d)
        safe = B.where(mag2 > 0, mag2, 1.0)
        per_sample = B.where(mag2 > 0, g2 * eps * xt / safe, 0.0)
        g = B.sum(per_sample, [2]) if S > 1 else per_sample  # xgrad already carries f's 1/S
        return g, float(B.scalar(B.sum(g * g, [0, 1])))

    def _perturbed(self, m: Any, eps: Any) -> Any:
        B = self.B
        S = B.dims(eps)[2]
        mm = m if S == 1 else B.tile(m, (1, 1, S))
        xx = self.x if S == 1 else B.tile(self.x, (1, 1, S))
        return xx + eps * mm

    def magnitudes(self, m: Any, eps: Any) -> Any:
        """Perturbed magnitudes ``|x + e*m|`` (K, T[, S]) by the fused kernel (float32) or array expressions."""
        if self.kernel_path != "generic":
            return mask_step.forward(self.x, eps, m, path=self.kernel_path)
        B = self.B
        xt = self._perturbed(m, eps)
        d = B.dims(xt)
        pairs = B.moddims(xt * xt, (2, self.K, d[1], d[2]))
        return B.moddims(B.sqrt(B.sum(pairs, [0])), (self.K, d[1], d[2]))

    # -- the same by autograd ------------------------------------------------------------------
    def autograd_input(self, mag: Variable) -> Variable:
        """Normalised network input (T, K, 1[, S]) from magnitudes (K, T[, S]) as an afmask.fl graph (population stdev)."""
        S = mag.dims(2)
        tr = fl.reorder(mag, 1, 0, 2, 3)
        mean = fl.mean(tr, [0, 1])
        stdev = fl.sqrt(fl.var(tr, [0, 1], True))
        inp = (tr - fl.tileAs(mean, tr)) / fl.tileAs(stdev, tr)
        if S > 1:
            inp = fl.moddims(inp, (self.T, self.K, 1, S))
        return inp

    def autograd_f(self, m: Variable, eps: Any) -> Variable:
        """``f`` as one afmask.fl graph from ``m`` (a Variable, 2K x T) through the features and the model."""
        B = self.B
        S = B.dims(eps)[2]
        K2 = 2 * self.K
        dtype = m.type()
        x = Variable(B.astype(self.x, dtype), False)
        e = Variable(B.astype(eps, dtype), False)
        if S > 1:
            x, mm = fl.tileAs(x, e), fl.tileAs(m, e)
        else:
            mm = m
        xt = x + e * mm
        re, im = xt(seq(0, K2 - 2, 2), span, span), xt(seq(1, K2 - 1, 2), span, span)
        mag = fl.sqrt(re * re + im * im)
        current = postprocess(self.model(self.autograd_input(mag)), self.variant)
        pre = self.pre_for(S)
        if pre.type() != dtype:
            pre = Variable(B.astype(pre.array(), dtype), False)
        return self.distance(current, S, pre)


class NoiseParts:
    """One draw of attenuation noise (host generator, NumPy) made as the passes need it: iterating gives ``(n, eps)``
    for consecutive blocks of ``per`` samples, the numbers of :meth:`MaskObjective.draw_noise` for the same seed,
    so a long utterance never holds its whole noise (2K x T x S) nor its whole U(0, 1) draw at once."""

    def __init__(self, objective: MaskObjective, seed: int, samples: int, per: int):
        self.objective, self.seed, self.samples, self.per = objective, int(seed), int(samples), int(per)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        o = self.objective
        for n, u in noise.host_uniform_parts(o.K, o.T, self.samples, self.seed, self.per, o.dtype):
            yield n, o.noise_from(o.factor(u), n)
            u = None
