"""Controls that ask whether an importance map shows more than loudness: energy-stratified deletion, ties.

Every control takes any importance map (K, T) (larger = more important), so
the mask's map and the baseline attribution methods are scored the same way.

Energy-stratified deletion (:func:`stratified_deletion`): the points are split
into ``deciles`` equal-count strata of energy ``|X|^2`` per bin (the ranks,
hence the strata, are those of the log magnitude too). Inside every stratum
the x % the map calls most important are deleted, against a random x % of
every stratum (several seeds), the x % it calls least important, and the
x % the same map calls most important after it is rolled in time by T/3 and
2T/3 (a wrong map with the same structure). Loudness is the same across the
compared sets by construction, so a difference is what the map knows beyond
energy. Deletion is by zeroing the point (as the global curves) and by the
method's own perturbation: relative noise ``x + eps*|x_k|*level``,
``eps ~ N(0, 1)`` per Re and Im, one fixed draw shared by every condition.
Insertion keeps only the x % and deletes the rest the same ways.

Scores: CER of the greedy decoding against the clean decoding and the
f-term (``||pre - cur||_F^2`` of the post-processed outputs), per x. A
curve's AUC is the trapezoidal area over x in [0, x_max] divided by x_max
(the mean score over the range, x = 0 being the clean input). Paired
differences are of AUCs over the same x and the same deletion noise.

Ties (:func:`ties`): points with equal importance have no order; every ranking
here breaks them at random (seeded), and the share of tied points (at the
map's maximum, e.g. the bound m_max, and at the most common value) is reported.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import numpy as np

from afmask.fl.nn import Module
from afmask.io.files import json_safe
from afmask.mask.config import ATTENUATIONS, DROP_BELOW

#: The default deletion fractions (of every energy stratum).
FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
SEEDS = (0, 1, 2)
SHIFTS = (1 / 3, 2 / 3)
MODES = ("zero", "noise")
KINDS = ("deletion", "insertion")
#: The perturbations the "noise" deletion can apply: the mask's relative noise and its two attenuations.
NOISE_KINDS = ("relative",) + tuple(ATTENUATIONS)
#: The relative noise's default level: ten times a point's magnitude, the bound of the earlier relative-noise default.
NOISE_LEVEL = 10.0
CONTROL_METRICS = ("cer_clean", "f")


# -- rankings with ties broken at random ---------------------------------------------------------------
def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).ravel(order="F")


def tie_broken_order(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat column-major indices of the (K, T) points from largest to smallest score, equal scores in random order."""
    flat = _flat(scores)
    if not np.all(np.isfinite(flat)):
        raise ValueError("the importance map holds NaN or Inf")
    rnd = np.random.default_rng([seed, 11]).random(flat.size)
    return np.lexsort((rnd, -flat))


def ties(importance: np.ndarray, bound: Optional[float] = None, rtol: float = 1e-6) -> dict:
    """Share of points tied: at the map's most common value, at its maximum / minimum, and at ``bound`` if given.

    Values within ``rtol`` (relative to the map's range) count as equal. For the mask's
    importance ``-log s`` the bound m_max is the map's minimum ``-log(m_max)``.
    """
    flat = _flat(importance)
    n = flat.size
    span = float(np.ptp(flat)) if n else 0.0
    tol = rtol * max(span, 1.0)
    q = np.round(flat / tol) if tol > 0 else flat
    values, counts = np.unique(q, return_counts=True)
    i = int(np.argmax(counts))
    out = {
        "points": n,
        "distinct": int(values.size),
        "most_common_value": float(values[i] * tol) if tol > 0 else float(values[i]),
        "most_common_share": float(counts[i] / n),
        "at_max_share": float(np.mean(np.abs(flat - flat.max()) <= tol)),
        "at_min_share": float(np.mean(np.abs(flat - flat.min()) <= tol)),
        "tied_share": float(counts[counts > 1].sum() / n),  # points sharing their value with another point
        "broken": "at random (seeded) in every ranking of the controls",
    }
    if bound is not None:
        out["bound"] = float(bound)
        out["at_bound_share"] = float(np.mean(np.abs(flat - bound) <= tol))
    return out


def ties_verdict(t: dict) -> str:
    """One line about the ties of a map."""
    if t.get("tie_break"):
        # the bound's points are ordered by a tie-break: what is left arbitrary is what still shares a value
        head = "WARNING: fails" if t["most_common_share"] >= 0.10 else "passes"
        return (f"{head}: {100 * t['most_common_share']:.2g}% of the points share the most common value, "
                f"{100 * t['tied_share']:.2g}% share theirs with another point; "
                f"{100 * t.get('at_bound_share', 0.0):.1f}% ended at the bound (m = {math.exp(-t['bound']):.3g}) and "
                f"are ordered among themselves by the tie-break, {t['tie_break']}")
    share = t.get("at_bound_share", t["most_common_share"])
    # the bound is given as an importance, -log(m_max): say it as the noise scale the user set
    where = (f"at the bound (m = {math.exp(-t['bound']):.3g})" if "bound" in t else
             f"at one value (importance {t['most_common_value']:.3g})")
    head = "WARNING: fails" if share >= 0.10 else "passes"
    return (f"{head}: {100 * share:.1f}% of the points are {where}, {100 * t['tied_share']:.1f}% share their value "
            f"with another point; their order is arbitrary and is broken at random in the rankings")


# -- energy strata -------------------------------------------------------------------------------------
def energy_strata(magnitude: np.ndarray, deciles: int = 10, seed: int = 0) -> np.ndarray:
    """Stratum (0 = quietest .. deciles-1 = loudest) of every point, flat column-major (K*T,), by energy |X|^2."""
    if deciles < 1:
        raise ValueError(f"deciles must be >= 1, got {deciles}")
    energy = _flat(magnitude) ** 2
    n = energy.size
    if n < deciles:
        raise ValueError(f"{n} points cannot make {deciles} energy strata")
    order = tie_broken_order(-energy, seed)  # quietest first, equal energies at random
    strata = np.empty(n, dtype=np.int64)
    strata[order] = (np.arange(n) * deciles) // n
    return strata


def _positions(order: np.ndarray, strata: np.ndarray, deciles: int) -> np.ndarray:
    """Rank of every point inside its own stratum (0 = first of ``order`` in that stratum), flat."""
    pos = np.empty(order.size, dtype=np.int64)
    s = strata[order]
    for d in range(deciles):
        idx = order[s == d]
        pos[idx] = np.arange(idx.size)
    return pos


def _deleted(pos: np.ndarray, strata: np.ndarray, sizes: np.ndarray, fraction: float, end: str, kind: str) -> np.ndarray:
    """Bool flat (K*T,): the points deleted at ``fraction`` of every stratum for one condition."""
    c = np.rint(fraction * sizes).astype(np.int64)[strata]
    n_d = sizes[strata]
    top = pos < c if end == "most" else pos >= n_d - c  # the x % chosen in each stratum
    return top if kind == "deletion" else ~top  # insertion deletes everything but the chosen x %


# -- the control ---------------------------------------------------------------------------------------
def _magnitude_of(fft: np.ndarray) -> np.ndarray:
    f = np.asarray(fft, dtype=np.float64)
    return np.sqrt(f[0::2] ** 2 + f[1::2] ** 2).astype(np.float32)


def noisy_magnitude(fft: np.ndarray, level: float = NOISE_LEVEL, seed: int = 0, kind: str = "relative") -> np.ndarray:
    """Magnitudes (K, T) float32 of the whole FFT perturbed once: ``kind`` "relative", ``x + eps*|x_k|*level`` with
    eps ~ N(0, 1) per Re and Im, "attenuate", ``x_k * (1 - level*u_k)`` with u_k ~ U(0, 1) per bin, or "drop", the same
    with u_k = 0 or 1 (the mask's own perturbations at noise scale ``level``)."""
    f = np.asarray(fft, dtype=np.float64)
    mag = np.sqrt(f[0::2] ** 2 + f[1::2] ** 2)
    if kind in ATTENUATIONS:
        u = np.random.default_rng([seed, 13]).random(mag.shape)
        u = (u < DROP_BELOW).astype(np.float64) if kind == "drop" else u
        return (mag * np.abs(1.0 - float(level) * u)).astype(np.float32)
    if kind != "relative":
        raise ValueError(f"the deletion noise must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    eps = np.random.default_rng([seed, 13]).standard_normal(f.shape)
    scale = np.repeat(mag, 2, axis=0) * float(level)
    g = f + eps * scale
    return np.sqrt(g[0::2] ** 2 + g[1::2] ** 2).astype(np.float32)


def _auc(x: Sequence[float], y: Sequence[Optional[float]]) -> Optional[float]:
    """The mean score over x: the global curves' trapezoidal area (x as fractions here) over the range it covers."""
    from afmask.evaluate.curves import auc

    kept = [a for a, b in zip(x, y) if b is not None and np.isfinite(b)]
    area = auc([100.0 * a for a in x], y)
    width = kept[-1] - kept[0] if len(kept) >= 2 else 0.0
    return area / width if area is not None and width > 0 else None


def _sub(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else float(a - b)


def _mean(vals) -> Optional[float]:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _sd(vals) -> Optional[float]:
    v = [x for x in vals if x is not None]
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def stratified_deletion(
    fft: np.ndarray,
    model: Module,
    importance: np.ndarray,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = SEEDS,
    shifts: Sequence[float] = SHIFTS,
    deciles: int = 10,
    modes: Sequence[str] = MODES,
    kinds: Sequence[str] = KINDS,
    noise_level: float = NOISE_LEVEL,
    variant: str = "posteriors",
    stats: str = "float64",
    magnitude: Optional[np.ndarray] = None,
    transcript: Optional[str] = None,
    batch: int = 16,
    seed: int = 0,
    scorer=None,
    noise_kind: str = "relative",
) -> dict:
    """Energy-stratified deletion (and insertion) of a map (K, T) on the clean FFT (2K, T): curves, AUCs, paired
    differences (most - random, least - random, most - shifted) and a verdict line per mode and kind.

    ``fractions``: shares of every stratum (0 < x <= 1); ``seeds``: random selections; ``shifts``: fractions of
    T the map is rolled by; ``modes``: "zero" and/or "noise" (``noise_kind`` "relative", "attenuate" or "drop" at
    ``noise_level``: the method's own perturbation); ``scorer``: a
    ready :class:`afmask.evaluate.scoring.Scorer` of the same utterance and model (else one is built).
    """
    from afmask.evaluate.scoring import Scorer

    t0 = time.perf_counter()
    fft = np.asarray(fft, dtype=np.float32)
    imp = np.asarray(importance, dtype=np.float64)
    if fft.ndim != 2 or fft.shape[0] % 2:
        raise ValueError(f"the clean FFT must be (2K, T) with interleaved Re/Im rows, got shape {fft.shape}")
    K, T = fft.shape[0] // 2, fft.shape[1]
    if imp.shape != (K, T):
        raise ValueError(f"the importance map must be (K, T) = ({K}, {T}) for an FFT {fft.shape}, got {imp.shape}")
    fracs = sorted(float(x) for x in fractions)
    if not fracs or not all(0 < x <= 1 for x in fracs):
        raise ValueError(f"fractions must be in (0, 1], got {list(fractions)}")
    if not seeds:
        raise ValueError("stratified deletion needs at least one random seed")
    for mo in modes:
        if mo not in MODES:
            raise ValueError(f"modes must be among {MODES}, got {mo!r}")
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"kinds must be among {KINDS}, got {k!r}")
    mag = _magnitude_of(fft) if magnitude is None else np.asarray(magnitude, dtype=np.float32)
    if scorer is None:
        scorer = Scorer(fft, mag, model, variant, stats=stats, noise="relative", transcript=transcript, batch=batch)
    forwards0 = scorer.forwards
    strata = energy_strata(mag, deciles, seed)
    sizes = np.bincount(strata, minlength=deciles)

    # every condition's within-stratum order: the map, its time-rolled copies, random selections
    shift_frames = sorted({int(round(s * T)) % T for s in shifts} - {0})
    orders: dict[str, tuple[np.ndarray, str]] = {
        "most": (tie_broken_order(imp, seed), "most"),
        "least": (tie_broken_order(imp, seed), "least"),
    }
    for sh in shift_frames:
        orders[f"shift{sh}"] = (tie_broken_order(np.roll(imp, sh, axis=1), seed), "most")
    for s in seeds:
        orders[f"random{s}"] = (np.random.default_rng([int(s), 17]).permutation(K * T), "most")
    pos = {name: _positions(o, strata, deciles) for name, (o, _) in orders.items()}

    clean_flat = mag.ravel(order="F")
    replaced = {"zero": np.zeros_like(clean_flat)}
    if "noise" in modes:
        replaced["noise"] = noisy_magnitude(fft, noise_level, seed, noise_kind).ravel(order="F")

    xs = [0.0] + fracs  # x = 0: deletion of nothing (the clean input), insertion of nothing (all deleted)
    # build every input once (identical ones, e.g. everything deleted, are scored once)
    keys: dict[tuple, int] = {}
    inputs: list[np.ndarray] = []
    index: dict[tuple, int] = {}
    for mo in modes:
        for kind in kinds:
            for name, (_, end) in orders.items():
                for x in xs:
                    dele = _deleted(pos[name], strata, sizes, x, end, kind)
                    key = (mo, np.packbits(dele).tobytes()) if dele.any() else ("clean",)
                    if key not in keys:
                        keys[key] = len(inputs)
                        flat = np.where(dele, replaced[mo], clean_flat)
                        inputs.append(flat.reshape((K, T), order="F"))
                    index[(mo, kind, name, x)] = keys[key]
    scores = scorer.score(inputs)

    out_modes: dict = {}
    for mo in modes:
        out_modes[mo] = {}
        for kind in kinds:
            curves, areas = {}, {}
            for name in orders:
                per_x = [scores[index[(mo, kind, name, x)]] for x in xs]
                curves[name] = {"text": [s.text for s in per_x]}
                for mt in CONTROL_METRICS:
                    ys = [getattr(s, mt) for s in per_x]
                    curves[name][mt] = ys
                    areas.setdefault(name, {})[mt] = _auc(xs, ys)
            out_modes[mo][kind] = _summarise(kind, mo, curves, areas, list(orders), noise_level, noise_kind)
    main_mode = "zero" if "zero" in modes else modes[0]
    main_kind = "deletion" if "deletion" in kinds else kinds[0]
    metric = "cer_clean" if scorer.clean_text else "f"
    return json_safe({
        "control": "energy-stratified deletion",
        "energy": "|X|^2 per bin, equal-count strata of its ranks (the same strata as for the log magnitude)",
        "deciles": int(deciles),
        "stratum_sizes": sizes.tolist(),
        "x": xs,
        "seeds": [int(s) for s in seeds],
        "shift_frames": shift_frames,
        "noise_level": float(noise_level),
        "noise": {"relative": "relative: x + eps*|x_k|*level on the deleted points, eps ~ N(0, 1) per Re and Im, one draw",
                  "attenuate": "attenuate: x_k*(1 - level*u_k) on the deleted points, u_k ~ U(0, 1) per bin, one draw",
                  "drop": "drop: x_k*(1 - level*u_k) on the deleted points, u_k = 0 or 1 per bin, one draw"}[noise_kind],
        "auc": "trapezoidal area over x in [0, x_max] divided by x_max (the mean score over the range)",
        "metric": metric,
        "clean_text": scorer.clean_text,
        "modes": out_modes,
        "verdict": out_modes[main_mode][main_kind]["verdict"][metric],
        "passes": out_modes[main_mode][main_kind]["passes"][metric],
        "forwards": scorer.forwards - forwards0,
        "seconds": round(time.perf_counter() - t0, 3),
    })


def _summarise(kind: str, mode: str, curves: dict, areas: dict, names: list, level: float,
               noise_kind: str = "relative") -> dict:
    """AUCs, paired differences, pass flags and verdict lines of one mode and kind."""
    randoms = [n for n in names if n.startswith("random")]
    shifted = [n for n in names if n.startswith("shift")]
    diff: dict = {"most-random": {}, "least-random": {}, "most-shifted": {}, "most-shifted_min": {}}
    random_mean, random_sd, passes, verdict = {}, {}, {}, {}
    how = "zeroing" if mode == "zero" else {"relative": f"relative noise x{level:g}",
                                            "attenuate": f"attenuation by U(0, {level:g})",
                                            "drop": f"drop noise at level {level:g}, each point scaled by {abs(1 - level):g} or 1 "
                                                    "at random"}[noise_kind]
    for mt in CONTROL_METRICS:
        rm = _mean(areas[r][mt] for r in randoms)
        random_mean[mt], random_sd[mt] = rm, _sd(areas[r][mt] for r in randoms)
        most, least = areas["most"][mt], areas["least"][mt]
        diff["most-random"][mt] = _sub(most, rm)
        diff["least-random"][mt] = _sub(least, rm)
        # deletion: the most important should hurt most; insertion: keeping them should hurt least
        sign = 1.0 if kind == "deletion" else -1.0
        per_shift = [d for d in (_sub(most, areas[s][mt]) for s in shifted) if d is not None]
        diff["most-shifted"][mt] = _mean(per_shift)
        # the shift the map does worst against (smallest difference for deletion, largest for insertion)
        diff["most-shifted_min"][mt] = min(per_shift, key=lambda d: sign * d) if per_shift else None
        mr, lr, ms = diff["most-random"][mt], diff["least-random"][mt], diff["most-shifted_min"][mt]
        sd = random_sd[mt] or 0.0
        p = {
            "beats_random": None if mr is None else bool(sign * mr > 0),
            "beats_random_clearly": None if mr is None else bool(sign * mr > 2 * sd),
            "beats_shifted": None if ms is None else bool(sign * ms > 0),
            "least_no_worse_than_random": None if lr is None else bool(sign * lr <= 0),
        }
        passes[mt] = p
        verdict[mt] = _verdict_line(kind, how, mt, mr, ms, lr, sd, p)
    return {"curves": curves, "auc": areas, "random_auc": random_mean, "random_sd": random_sd, "diff": diff,
            "passes": passes, "verdict": verdict}


def _verdict_line(kind, how, mt, mr, ms, lr, sd, p) -> str:
    name = "CER against the clean decoding" if mt == "cer_clean" else "f-term"
    f = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
    if kind == "deletion":
        ok = p["beats_random_clearly"] and p["beats_shifted"] and p["least_no_worse_than_random"]
        head = "passes" if ok else "WARNING: fails"
        return (f"{head}: within energy deciles ({how}, {name}), most-important deletion "
                f"{'beats' if p['beats_random'] else 'does not beat'} random (AUC difference {f(mr)}, random sd "
                f"{sd:.3f}) and {'beats' if p['beats_shifted'] else 'does not beat'} the time-shifted map (worst shift "
                f"{f(ms)}); least-important deletion hurts {'less' if p['least_no_worse_than_random'] else 'MORE'} "
                f"than random ({f(lr)})")
    ok = p["beats_random_clearly"] and p["beats_shifted"] and p["least_no_worse_than_random"]
    head = "passes" if ok else "WARNING: fails"
    word = lambda good: "less" if good else "MORE"  # noqa: E731
    return (f"{head}: within energy deciles ({how}, {name}), keeping only the most important x% of every decile hurts "
            f"{word(p['beats_random'])} than keeping a random x% (AUC difference {f(mr)}, random sd {sd:.3f}) and "
            f"{word(p['beats_shifted'])} than keeping the time-shifted map's (worst shift {f(ms)}); keeping only the "
            f"least important hurts {'more' if p['least_no_worse_than_random'] else 'LESS'} than random ({f(lr)})")


# -- plausibility against word alignments --------------------------------------------------------------
#: frame t covers samples [160 t, 160 t + 400): its centre is at 0.01 t + 0.0125 s.
FRAME_S, FRAME_CENTRE_S = 0.01, 0.0125


def word_frames(words: Sequence[dict], T: int) -> np.ndarray:
    """Bool (T,): frames whose centre lies inside a word ``{"b": start_s, "d": duration_s}`` (silence: the rest)."""
    centre = FRAME_S * np.arange(T) + FRAME_CENTRE_S
    inside = np.zeros(T, dtype=bool)
    for w in words:
        b, d = float(w["b"]), float(w["d"])
        inside |= (centre >= b) & (centre < b + d)
    return inside


def _rank_map(scores: np.ndarray, seed: int) -> np.ndarray:
    """Ranks (K, T) in (0, 1]: 1 for the most important point, ties broken at random."""
    order = tie_broken_order(scores, seed)
    n = order.size
    r = np.empty(n)
    r[order] = (n - np.arange(n)) / n
    return r.reshape(np.shape(scores), order="F")


def plausibility(importance: np.ndarray, words: Sequence[dict], magnitude: np.ndarray, top: float = 0.10,
                 seed: int = 0) -> dict:
    """Share of a map's rank mass inside words (vs silence) and of its top-``top`` points, against energy and uniform.

    Rank mass: the map's ranks (1 = most important, ties at random) summed inside word frames over their
    sum over all points, so any map (whatever its scale or sign) is comparable. A uniform map's share is the
    share of points inside words.
    """
    imp = np.asarray(importance, dtype=np.float64)
    mag = np.asarray(magnitude, dtype=np.float64)
    if imp.shape != mag.shape:
        raise ValueError(f"the importance map {imp.shape} and the magnitudes {mag.shape} must have the same (K, T)")
    if not 0 < top < 1:
        raise ValueError(f"top must be in (0, 1), got {top}")
    K, T = imp.shape
    inside_t = word_frames(words, T)
    if not inside_t.any():
        raise ValueError("no frame lies inside a word: the alignment does not cover this utterance")
    inside = np.broadcast_to(inside_t, (K, T))
    n_top = max(1, int(round(top * K * T)))

    def shares(scores: np.ndarray) -> dict:
        r = _rank_map(scores, seed)
        topmask = r > 1 - n_top / r.size
        return {"mass_in_words": float(r[inside].sum() / r.sum()),
                f"top{int(round(100 * top))}_in_words": float(topmask[inside].sum() / topmask.sum()),
                "mean_rank_words": float(r[inside].mean()),
                "mean_rank_silence": float(r[~inside].mean()) if (~inside).any() else None}

    in_share = float(inside_t.mean())
    key = f"top{int(round(100 * top))}_in_words"
    res = {
        "control": "plausibility against word alignments",
        "words": len(words),
        "frames_in_words": int(inside_t.sum()),
        "frames": T,
        "map": shares(imp),
        "energy": shares(mag),
        "uniform": {"mass_in_words": in_share, key: in_share, "mean_rank_words": None, "mean_rank_silence": None},
        "top": top,
    }
    mp, en, un = res["map"], res["energy"], res["uniform"]
    beats_e = mp["mass_in_words"] > en["mass_in_words"] and mp[key] > en[key]
    beats_u = mp["mass_in_words"] > un["mass_in_words"] and mp[key] > un[key]
    res["beats_energy"], res["beats_uniform"] = bool(beats_e), bool(beats_u)
    head = "passes" if beats_e else ("WARNING: no better than energy" if beats_u else "WARNING: no better than uniform")
    res["verdict"] = (f"{head}: plausibility against the word alignment: {100 * mp['mass_in_words']:.1f}% of the map's "
                      f"rank mass is inside words (energy {100 * en['mass_in_words']:.1f}%, uniform "
                      f"{100 * in_share:.1f}%); of its top {100 * top:g}% points {100 * mp[key]:.1f}% are inside words "
                      f"(energy {100 * en[key]:.1f}%, uniform {100 * in_share:.1f}%)")
    return json_safe(res)


# -- the band a blind model cannot hear ------------------------------------------------------------------
def top_membership(scores: np.ndarray, top: float = 0.20, seed: int = 0) -> np.ndarray:
    """Bool map (K, T): which points are among the map's top-``top`` (ties broken at random)."""
    scores = np.asarray(scores)
    order = tie_broken_order(scores, seed)
    flat = np.zeros(order.size, dtype=bool)
    flat[order[: max(1, int(round(top * order.size)))]] = True
    return flat.reshape(scores.shape, order="F")


def region_share(scores: np.ndarray, region: np.ndarray, top: float = 0.20, seed: int = 0) -> float:
    """Share of a map's top-``top`` points (ties at random) that lie inside the bool (K, T) ``region``."""
    inside = top_membership(scores, top, seed)
    return float(np.asarray(region)[inside].mean())


# -- every map-only control at once ---------------------------------------------------------------------
def evaluate_map(
    fft: np.ndarray,
    model: Module,
    importance: np.ndarray,
    magnitude: Optional[np.ndarray] = None,
    words: Optional[Sequence[dict]] = None,
    bound: Optional[float] = None,
    variant: str = "posteriors",
    stats: str = "float64",
    transcript: Optional[str] = None,
    fractions: Sequence[float] = FRACTIONS,
    seeds: Sequence[int] = SEEDS,
    modes: Sequence[str] = MODES,
    kinds: Sequence[str] = KINDS,
    noise_level: float = NOISE_LEVEL,
    batch: int = 16,
    seed: int = 0,
    scorer=None,
    noise_kind: str = "relative",
) -> dict:
    """The controls that need only a map (K, T), the clean FFT (2K, T) and the model: ``{"stratified", "ties",
    "plausibility"}`` (plausibility only with ``words``), each with its numbers and a verdict line.

    ``bound``: the importance value of the method's bound (for the mask: ``-log(m_max)``), for the ties count.
    The controls that re-explain (blind models, randomisation) take an explainer: see
    :func:`afmask.evaluate.sanity.randomisation_check` and :func:`blind_test`.
    """
    imp = np.asarray(importance, dtype=np.float64)
    mag = _magnitude_of(fft) if magnitude is None else np.asarray(magnitude, dtype=np.float32)
    t = ties(imp, bound=bound)
    t["verdict"] = ties_verdict(t)
    out = {
        "stratified": stratified_deletion(fft, model, imp, fractions=fractions, seeds=seeds, modes=modes, kinds=kinds,
                                          noise_level=noise_level, noise_kind=noise_kind, variant=variant, stats=stats,
                                          magnitude=mag,
                                          transcript=transcript, batch=batch, seed=seed, scorer=scorer),
        "ties": json_safe(t),
    }
    if words:
        out["plausibility"] = plausibility(imp, words, mag, seed=seed)
    return out


def blind_test(
    fft: np.ndarray,
    model: Module,
    explain,
    band: Optional[tuple[int, int]] = None,
    frames: Optional[tuple[int, int]] = None,
    magnitude: Optional[np.ndarray] = None,
    variant: str = "posteriors",
    stats: str = "float64",
    top: float = 0.20,
    seed: int = 0,
    importance: Optional[np.ndarray] = None,
    leaky: bool = False,
) -> dict:
    """Ground truth: a model blind to bins ``band`` = (LO, HI) or frames ``frames`` = (A, B) is explained by
    ``explain(model, seed) -> (K, T)`` (or ``importance``, a map of it made elsewhere); where the region falls in
    the map's top-``top`` points against energy's, and how much deleting the region changes the blind model's
    output.

    The blind model is exactly blind (:mod:`afmask.model.blind`, the normalisation taken over the other points)
    unless ``leaky``, where the region still reaches it through the global normalisation; what the leaky form
    leaks is measured either way."""
    from afmask.evaluate.scoring import Scorer
    from afmask.model.blind import blind_to_band, blind_to_frames

    if (band is None) == (frames is None):
        raise ValueError("give exactly one of band=(LO, HI) and frames=(A, B)")
    fft = np.asarray(fft, dtype=np.float32)
    mag = _magnitude_of(fft) if magnitude is None else np.asarray(magnitude, dtype=np.float32)
    K, T = mag.shape
    region = np.zeros((K, T), dtype=bool)
    if band is not None:
        lo, hi = int(band[0]), int(band[1])
        region[lo:hi] = True
        blinds = {form: blind_to_band(model, lo, hi, magnitude=mag if form == "exact" else None)
                  for form in ("exact", "leaky")}
        what = f"bins {lo}..{hi - 1} ({lo * 16000 / 512:.0f}-{(hi - 1) * 16000 / 512:.0f} Hz)"
    else:
        a, b = int(frames[0]), int(frames[1])
        region[:, a:b] = True
        blinds = {form: blind_to_frames(model, a, b, T, magnitude=mag if form == "exact" else None)
                  for form in ("exact", "leaky")}
        what = f"frames {a}..{b - 1} ({a * FRAME_S:.2f}-{b * FRAME_S:.2f} s)"
    form = "leaky" if leaky else "exact"
    blind = blinds[form]
    t0 = time.perf_counter()
    imp = np.asarray(explain(blind, seed) if importance is None else importance, dtype=np.float64)
    seconds = time.perf_counter() - t0
    share_map = region_share(imp, region, top, seed)
    share_energy = region_share(mag, region, top, seed)
    axis = 1 if band is not None else 0  # per bin for a band, per frame for a window
    profile = {"axis": "bin" if band is not None else "frame",
               "map": top_membership(imp, top, seed).mean(axis=axis).tolist(),
               "energy": top_membership(mag, top, seed).mean(axis=axis).tolist()}
    # what deleting the region does to each form of the blind model: the leaky one sees it through the global
    # normalisation, the exact one should not see it at all (float32 rounding aside)
    deleted = np.where(region, 0.0, mag).astype(np.float32)
    scores = {name: Scorer(fft, mag, net, variant, stats=stats, noise="relative").score([deleted])[0]
              for name, net in (*blinds.items(), ("model", model))}
    t = ties(imp)
    pct = int(round(100 * top))
    passes = bool(share_map <= 0.02)
    leak = (f"; deleting the region changes this blind model's output by f = {scores[form].f:.4g} (CER "
            f"{_f3(scores[form].cer_clean)} against its clean decoding), the leaky form's (normalised over all points) "
            f"by f = {scores['leaky'].f:.4g} (CER {_f3(scores['leaky'].cer_clean)}), the unblinded model's by "
            f"f = {scores['model'].f:.4g} (CER {_f3(scores['model'].cer_clean)})")
    how = "exactly blind" if form == "exact" else "blind in its first layer only (leaky: the normalisation sees the region)"
    verdict = (f"{'passes' if passes else 'WARNING: fails'}: a model {how} to {what} gets "
               f"{100 * share_map:.1f}% of the map's top {pct}% points in that region, energy's ranking puts "
               f"{100 * share_energy:.1f}% there, the region holds {100 * region.mean():.1f}% of all points" + leak)
    return json_safe({
        "control": "blind model", "band": list(band) if band is not None else None,
        "frames": list(frames) if frames is not None else None, "region": what, "region_share": float(region.mean()),
        "form": form, "top": top, "map_top_share": share_map, "energy_top_share": share_energy,
        "map_mean_rank_in_region": float(_rank_map(imp, seed)[region].mean()), "profile": profile,
        "leak": {"blind_f": scores[form].f, "blind_cer_clean": scores[form].cer_clean,
                 "blind_text": scores[form].text, "leaky_f": scores["leaky"].f,
                 "leaky_cer_clean": scores["leaky"].cer_clean, "model_f": scores["model"].f,
                 "model_cer_clean": scores["model"].cer_clean},
        "ties_most_common_share": t["most_common_share"], "passes": passes, "verdict": verdict,
        "seconds": round(seconds, 3),
    })


def _f3(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.3f}"
