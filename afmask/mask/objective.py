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

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from afmask import fl
from afmask.backend import Backend, get_backend
from afmask.features.stft import global_mean_stdev
from afmask.fl import Variable, seq, span
from afmask.fl.nn import Module
from afmask.kernels import mask_step
from afmask.mask import noise
from afmask.mask.config import NOISES
from afmask.mask.postprocess import postprocess


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
class Forward:
    """What one forward pass keeps for the hand-written backward."""

    m: Any  # the noise scale used, (2K, T), column-major
    eps: Any  # noise e, (2K, T[, S]); already scaled (absolute: fftstdev, relative: |x_k|)
    mag: Any  # |x~|, (K, T[, S])
    centred: Any  # trInput - mean, (T, K[, S])
    stdev: Any  # population stdev per sample, (1, 1[, S])
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
        self.model = model
        self.variant, self.noise, self.stats = variant, noise, stats
        self.K, self.T = fft.shape[0] // 2, fft.shape[1]
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        host = np.asfortranarray(fft, dtype=np.float32)
        self.x = fortran(self.B, self.B.asarray(host.astype(self.dtype)))
        if self.dtype != np.float32:
            self.kernel_path = "generic"
        else:
            self.kernel_path = mask_step.best_path(self.B.name) if kernel_path == "auto" else kernel_path
        # af::stdev<float> of the clean FFT: the scale of the original's absolute noise
        self.fftstdev = float(global_mean_stdev(host, stats=stats)[1])
        # the features' own helpers fix K = 257; the objective takes any K (small test networks)
        clean_mag = np.sqrt(host[0::2].astype(np.float64) ** 2 + host[1::2].astype(np.float64) ** 2).astype(np.float32)
        self.clean_magnitude = clean_mag  # (K, T) float32
        if noise == "absolute":
            self.noise_scale = None
        elif noise == "attenuate":
            # x~ = x + eps*m with eps = -u*x per row: the bin scaled by (1 - m*u), both rows by the same u
            self.noise_scale = fortran(self.B, -self.x)
        else:
            self.noise_scale = self.B.asarray(np.asfortranarray(np.repeat(clean_mag, 2, axis=0), dtype=self.dtype))
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
    def draw_noise(self, seed: int, samples: int = 1, generator: str = "host") -> Any:
        """Noise e (2K, T[, S]) float32, column-major: N(0, fftstdev^2) (absolute), N(0, 1) * |x_k| (relative) or
        -u * x with u ~ U(0, 1) per bin (attenuate).

        ``generator``: "host" (the same draws on every backend) or "device" (see afmask.mask.noise)."""
        B = self.B
        if self.noise == "attenuate":
            u = noise.uniform(B, self.K, self.T, samples, seed, self.dtype, generator)
            # one u per bin for both its rows (moddims of a 2 x K x T x S tile interleaves them): the pair is scaled
            # together, so its phase is kept and only its magnitude changes
            pair = B.tile(B.moddims(u, (1, self.K, self.T, samples)), (2, 1, 1, 1))
            raw = B.moddims(pair, (2 * self.K, self.T, samples) if samples > 1 else (2 * self.K, self.T))
        else:
            raw = noise.standard_normal(B, 2 * self.K, self.T, samples, seed, self.dtype, generator)
        if self.noise_scale is None:
            return fortran(B, raw * self.dtype.type(self.fftstdev))
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
        """Normalised network input (T, K, 1[, S]) from magnitudes (K, T[, S]); also trInput - mean and stdev."""
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
            mean = B.mean(tr, [0, 1])
            centred = tr - B.tile(mean, (self.T, self.K, 1))
            stdev_arr = B.sqrt(B.mean(centred * centred, [0, 1]))
            inp = centred / B.tile(stdev_arr, (self.T, self.K, 1))
        if S > 1:
            inp = B.moddims(inp, (self.T, self.K, 1, S))
        return inp, centred, stdev_arr

    def distance(self, current: Variable, samples: int, pre: Optional[Variable] = None) -> Variable:
        """Mean over samples of ``||pre - cur||_F^2``; ``pre`` defaults to the clean output.

        The original computes ``f_L2 = fl::norm(pre - cur, {0,1}); f_L2 * f_L2``; the sum of squares here is
        the same value (to rounding) but its gradient is 0, not NaN (0/0 in norm's backward), where cur == pre.
        """
        d = (self.pre_for(samples) if pre is None else pre) - current
        sq = fl.sum(d * d, [0, 1])
        return fl.mean(sq, [2]) if samples > 1 else sq

    # -- forward and the hand-written backward -----------------------------------------------
    def forward(self, m: Any, eps: Any) -> Forward:
        """Forward pass for noise scale ``m`` (2K, T) and noise ``eps``; the network input keeps its gradient."""
        B = self.B
        S = B.dims(eps)[2]
        m = fortran(B, m)
        mag = self.magnitudes(m, eps)
        inp, centred, stdev = self.network_input(mag)
        input_var = _leaf(inp, B, True)
        output = self.model(input_var)
        current = postprocess(output, self.variant)
        f = self.distance(current, S)
        return Forward(m, eps, mag, centred, stdev, input_var, output, current, f)

    def input_gradient(self, fw: Forward) -> Any:
        """``dL/d|x~|`` (K, T[, S]) from the gradient at the network input of a forward pass that has run backward."""
        return self.normalisation_backward(fw.input.grad().array(), fw.centred, fw.stdev)

    def normalisation_backward(self, dy: Any, centred: Any, stdev: Any) -> Any:
        """``dL/d|x~|`` (K, T[, S]) from ``dy`` (T, K[, 1, S]) by the note's batch-norm style backward through the
        global normalisation.

        sigma2 = stdev^2; dsigma2 = sum(dy*(x-mu))*(-0.5)*sigma2^-1.5;
        dmu = sum(dy*(-1/sigma)) + sum(-2*(x-mu))*dsigma2/N; dx = dy/sigma + dsigma2*2*(x-mu)/N + dmu/N,
        sums over all T*K values of each sample (N = T*K).
        """
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
        return fortran(B, B.reorder(dx, (1, 0, 2, 3)))

    def data_gradient(self, fw: Forward) -> tuple[Any, float]:
        """``d f / d m`` (2K, T) by the hand-written backward and the fused kernel; also its squared norm."""
        fw.f.backward()
        return self.magnitude_backward(self.input_gradient(fw), fw.eps, fw.m, fw.mag)

    def magnitude_backward(self, xgrad: Any, eps: Any, m: Any, mag: Any) -> tuple[Any, float]:
        """``d f / d m`` (2K, T) from ``xgrad = dL/d|x~|`` (K, T[, S]) through ``|x + e*m|``; also its squared norm."""
        S = self.B.dims(eps)[2]
        if self.kernel_path != "generic":
            # f is the mean over samples, so xgrad already carries 1/S; the kernel averages per-sample gradients
            if S > 1:
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
