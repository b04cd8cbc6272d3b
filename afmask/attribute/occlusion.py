"""Random occlusion weighted by how well each occluded input preserves the output: RISE (Petsiuk et al., 2018).

The SPES / RISE family: draw ``n_masks`` random low-resolution binary grids
(each cell kept with probability ``p_keep``), upsample each bilinearly to the
spectrogram with a random shift of less than one cell, multiply the
utterance's points by it (magnitudes: a removed point is silent, as in the
deletion curves), run the masked inputs through the network in batches, and
score each by how well it preserves the clean output (default ``"prob"``: the
mean over frames of the posterior of the clean greedy token). Importance is the
score-weighted sum of the masks, ``sum_i (s_i - mean s) M_i / (N p_keep)``: the
paper's ``sum_i s_i M_i / (N p)`` with the mean score subtracted, a control
variate that has the same expectation up to a constant (so the same ranking in
the limit) and less variance at finite N.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from afmask.attribute.base import Attributor, Progress, _positive_int, batches
from afmask.attribute.target import Target
from afmask.fl.nn import Module


def _interpolation(n: int, cell: int, shifts: np.ndarray) -> np.ndarray:
    """Linear interpolation weights (S, n, G) from G = ceil(n / cell) + 1 grid nodes, spaced ``cell``, to n points
    at offsets ``shifts`` (S,) in [0, cell)."""
    G = -(-n // cell) + 1
    u = (np.arange(n)[None, :] + shifts[:, None]) / cell  # position in grid units, < G - 1
    i0 = np.floor(u).astype(np.int64)
    frac = u - i0
    w = np.zeros((shifts.size, n, G))
    s_idx = np.arange(shifts.size)[:, None]
    n_idx = np.arange(n)[None, :]
    w[s_idx, n_idx, i0] = 1 - frac
    w[s_idx, n_idx, np.minimum(i0 + 1, G - 1)] += frac
    return w


def random_masks(shape: tuple[int, int], indices: Sequence[int], cell: tuple[int, int], p_keep: float, seed: int = 0) -> np.ndarray:
    """RISE masks number ``indices`` (K, T, len(indices)) float64 in [0, 1]: binary grids of ``cell`` = (bins, frames)
    cells, each kept with probability ``p_keep``, upsampled bilinearly with a random shift of less than one cell.
    Mask i is drawn from its own generator (``seed``, i), so it is the same whatever the batch it is drawn in."""
    K, T = shape
    ck, ct = cell
    gk, gt = -(-K // ck) + 1, -(-T // ct) + 1
    count = len(indices)
    grids = np.empty((count, gk, gt))
    shifts = np.empty((count, 2))
    for j, i in enumerate(indices):
        rng = np.random.default_rng([int(seed), 13, int(i)])
        grids[j] = rng.random((gk, gt)) < p_keep
        shifts[j] = rng.integers(0, ck), rng.integers(0, ct)
    ak = _interpolation(K, ck, shifts[:, 0])  # (S, K, gk)
    at = _interpolation(T, ct, shifts[:, 1])  # (S, T, gt)
    masks = np.einsum("skg,sgh,sth->kts", ak, grids, at, optimize=True)
    return np.clip(masks, 0.0, 1.0)


class RISE(Attributor):
    """RISE: importance = the preservation-score-weighted sum of random smooth occlusion masks (see the module)."""

    name = "rise"
    default_score = "prob"

    def __init__(
        self,
        model: Module,
        score: Optional[str] = None,
        space: Optional[str] = None,
        batch: int = 8,
        n_masks: int = 1000,
        cell: Union[int, Sequence[int]] = (16, 8),
        p_keep: float = 0.5,
        seed: int = 0,
    ):
        """``n_masks`` random masks; ``cell``: (bins, frames) of one grid cell (an int: the same both ways);
        ``p_keep``: probability that a cell is kept; ``seed`` of the masks."""
        super().__init__(model, score, space, batch)
        self.n_masks = _positive_int("n_masks", n_masks)
        cells = (cell, cell) if isinstance(cell, (int, np.integer)) else tuple(cell)
        if len(cells) != 2:
            raise ValueError(f"cell must be an int or (bins, frames), got {cell!r}")
        self.cell = tuple(_positive_int("cell", c) for c in cells)
        if not (isinstance(p_keep, (int, float)) and 0 < p_keep < 1):
            raise ValueError(f"p_keep must be in (0, 1), got {p_keep!r}")
        self.p_keep, self.seed = float(p_keep), int(seed)

    def settings(self) -> dict:
        """The settings, JSON-able."""
        return {**super().settings(), "n_masks": self.n_masks, "cell": list(self.cell), "p_keep": self.p_keep, "seed": self.seed}

    def _attribute(self, target: Target, progress: bool) -> tuple[np.ndarray, dict]:
        x = target.point
        weighted = np.zeros(x.shape, np.float64)
        kept = np.zeros(x.shape, np.float64)
        scores = np.empty(self.n_masks, np.float64)
        bar = Progress(progress, self.n_masks, "afmask attribute: rise")
        # the masks are drawn batch by batch and kept only as running sums, sum_i s_i M_i and sum_i M_i,
        # so that thousands of masks need no more memory than one batch
        try:
            for sl in batches(self.n_masks, self.batch):
                masks = random_masks(x.shape, range(sl.start, sl.stop), self.cell, self.p_keep, self.seed)
                s = target.scores(x[:, :, None] * masks)
                scores[sl] = s
                weighted += np.tensordot(masks, s, axes=([2], [0]))
                kept += masks.sum(axis=2)
                bar.update(sl.stop - sl.start)
        finally:
            bar.close()
        mean = float(scores.mean())
        imp = (weighted - mean * kept) / (self.n_masks * self.p_keep)
        return imp, {"score_mean": mean, "score_std": float(scores.std()), "clean_score": target.clean_score()}
