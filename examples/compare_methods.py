"""Every attribution method on the same clips, the same model and the same controls: a CSV and a markdown table.

    PYTHONPATH=. python examples/compare_methods.py --out compare-methods/ [--clips A.wav B.wav ...] [--rise-masks 1000]

For each clip (default: the bundled utterance, which is LibriVox 0890, and the
other two LibriVox clips in ../shared/data/librivox) and each method of
afmask.attribute (Saliency, InputXGradient, SmoothGrad, IntegratedGradients,
RISE, fixed-area extremal masks, afmask's own NoiseMask in the default mode) it writes the map
(OUT/CLIP/METHOD/importance.npy, attribution.json) and measures, with the demo
model:

- the energy-stratified deletion control (afmask.evaluate.controls, by
  zeroing; --modes zero noise adds deletion by the default mode's own
  perturbation, drop noise at its bound; --kinds deletion insertion adds
  insertion; CER against the clean decoding): paired AUC differences
  most - random, least - random, most - shifted (mean over the two shifts);
- the global deletion/insertion gap AUC(del) - AUC(ins) of the CER against
  the clean decoding (afmask.evaluate.curves, 10 % steps, ties broken at
  random), beside plain energy's;
- the blind-band test (bins 0..20 and 60..120): the share of the map's top
  20 % points inside the band for a model blind to it (re-explained with the
  same method), against energy's; on the first clip only (--blind-clips) and
  not for RISE unless --blind-rise (each blind model costs one more run).
  The blind models are exactly blind (their input standardised over the
  other bins); --blind-leaky takes the earlier form, which the band still
  reaches through the global normalisation;
- model randomisation (afmask.evaluate.sanity.randomisation_check, on the
  first --randomisation-clips clips): the method re-run on the model with its
  top half and then all of its layers re-drawn (He-normal), each map's
  Spearman correlation with the trained map within energy deciles, against
  the method's own seed-to-seed ceiling;
- seconds per utterance of the method itself.

OUT/results.csv has one row per clip and method; OUT/table.md the summary per
method (mean over clips, and how many clips pass). Each method's row is
written as soon as it is done (OUT/CLIP/METHOD/row.json), and a rerun
reuses it (--again recomputes); a rerun that asks for more (another mode,
insertion, randomisation) adds it to the saved row from the saved map. Each method folder is an attribution folder
(importance.npy, attribution.json, config.json, controls.json), so
``afmask compare OUT/CLIP/*/`` ranks the methods of one clip per control.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from afmask.attribute import make_method  # noqa: E402
from afmask.evaluate.controls import NOISE_KINDS, blind_test, evaluate_map, tie_broken_order  # noqa: E402
from afmask.evaluate.curves import compute_curves, percent_grid  # noqa: E402
from afmask.evaluate.evaluation import find_transcript, find_words  # noqa: E402
from afmask.evaluate.sanity import randomisation_check  # noqa: E402
from afmask.evaluate.scoring import Scorer  # noqa: E402
from afmask.features import features  # noqa: E402
from afmask.io import load_audio  # noqa: E402
from afmask.io.files import atomic_write  # noqa: E402
from afmask.mask import MaskConfig  # noqa: E402
from afmask.model import demo_model  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "librivox"
DEFAULT_CLIPS = [ROOT / "afmask" / "data" / "audio" / "demo.wav",
                 SHARED / "sense_and_sensibility_01_austen_64kb-0870.wav",
                 SHARED / "sense_and_sensibility_01_austen_64kb-0920.wav"]
METHOD_ORDER = ["saliency", "ixg", "smoothgrad", "ig", "rise", "extremal", "mask", "faithful"]
BANDS = [(0, 21), (60, 121)]  # bins 0..20 and 60..120
COLUMNS = ["clip", "method", "seconds", "forwards", "most_random", "least_random", "most_shifted", "most_shifted_worst",
           "random_sd", "stratified_passes", "most_random_noise", "least_random_noise", "most_shifted_noise",
           "gap", "gap_energy", "gap_random", "blind_0_20", "blind_0_20_energy", "blind_60_120", "blind_60_120_energy",
           "tied_share", "top10_in_words", "top10_in_words_energy", "spearman_energy",
           "most_shifted_worst_noise", "stratified_passes_noise",
           "most_random_ins", "least_random_ins", "most_shifted_worst_ins", "stratified_passes_ins",
           "rand_raw", "rand_fit", "rand_within", "rand_half_within", "rand_ceiling_within", "rand_passes",
           "most_random_noise_ins", "least_random_noise_ins", "most_shifted_worst_noise_ins", "stratified_passes_noise_ins"]
#: the columns each optional part fills (a saved row without them is completed from its saved map)
PART_COLUMNS = {"noise": "stratified_passes_noise", "insertion": "stratified_passes_ins", "randomisation": "rand_passes"}
DEFAULT = MaskConfig.preset("default")


def options(args) -> dict:
    """Constructor options of every method (the settings the table states)."""
    return {
        "saliency": {},
        "ixg": {},
        "smoothgrad": {"n_samples": args.smoothgrad_samples, "stdev": 0.1},
        "ig": {"n_steps": args.ig_steps},
        "rise": {"n_masks": args.rise_masks, "cell": (16, 8), "p_keep": 0.5},
        "extremal": {"iterations": args.extremal_iterations, "space": args.extremal_space},
        "mask": {"config": MaskConfig.preset("default", **{"iterations": args.mask_iterations, **mask_overrides(args)}),
                 "restarts": args.mask_restarts},
        # the original C++ loop, as `--mode faithful` runs it (5000 SGD iterations)
        "faithful": {"config": MaskConfig.preset("faithful")},
    }


def mask_overrides(args) -> dict:
    """The default mode's settings that --mask-set changes (KEY=VALUE, the value read as JSON where it parses)."""
    out = {}
    for item in args.mask_set:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--mask-set {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b))[0])


def global_gaps(scorer: Scorer, rankings: dict, step: float) -> dict:
    """AUC(deletion) - AUC(insertion) of the CER against the clean decoding per ranking (flat column-major orders)."""
    curves = compute_curves(scorer, rankings, percent_grid(step))
    return {name: pair["deletion"].area("cer_clean") - pair["insertion"].area("cer_clean") for name, pair in curves.items()}


def stratified_columns(part: dict, suffix: str) -> dict:
    """The row's columns of one mode and kind of the stratified control (CER against the clean decoding)."""
    d, p = part["diff"], part["passes"]["cer_clean"]
    cols = {"most_random": d["most-random"]["cer_clean"], "least_random": d["least-random"]["cer_clean"],
            "most_shifted": d["most-shifted"]["cer_clean"], "most_shifted_worst": d["most-shifted_min"]["cer_clean"],
            "stratified_passes": bool(p["beats_random_clearly"] and p["beats_shifted"] and p["least_no_worse_than_random"])}
    if not suffix:
        cols["random_sd"] = part["random_sd"]["cer_clean"]
    return {f"{k}{suffix}": v for k, v in cols.items()}


def explainer(name: str, opts: dict, feats: dict):
    """``explain(model, seed) -> importance`` of one method with the table's settings (seeded where it draws)."""
    kind = "mask" if name == "faithful" else name

    def explain(net, seed: int) -> np.ndarray:
        o = dict(opts)
        if kind == "mask":
            o["config"] = o["config"].replace(seed=int(seed))
        elif kind in ("smoothgrad", "rise"):
            o["seed"] = int(seed)
        return make_method(kind, net, **o).attribute(feats).importance

    return explain


def randomisation_columns(res: dict) -> dict:
    """The row's columns of the randomisation check: the all-random level, the half-random one, the ceiling."""
    ceiling, half, last = res["levels"][0], res["levels"][1], res["levels"][-1]
    return {"rand_raw": last["raw"], "rand_fit": last["log_energy_fit"], "rand_within": last["within_deciles"],
            "rand_half_within": half["within_deciles"], "rand_ceiling_within": ceiling["within_deciles"],
            "rand_passes": res["passes"]}


def add_parts(folder: Path, clip: Path, row: dict, wanted: list[str], fft, mag, model, scorer, opts, feats, name,
              args) -> dict:
    """Complete a saved row with the optional parts it lacks (``wanted``), from the saved map."""
    from afmask.attribute import Attribution
    from afmask.evaluate.controls import stratified_deletion

    imp = Attribution.load(folder).importance
    ctl = json.loads((folder / "controls.json").read_text())
    if "noise" in wanted or "insertion" in wanted:  # the stratified control again, with every mode and kind asked
        st = stratified_deletion(fft, model, imp, modes=stratified_modes(args), kinds=stratified_kinds(args),
                                 scorer=scorer, magnitude=mag, noise_kind=args.noise_kind, noise_level=args.noise_level)
        ctl["stratified"] = st
        row.update(stratified_part_columns(st))
    if "randomisation" in wanted:
        res = randomisation_check(model, explainer(name, opts, feats), imp, mag, scorer.clean_input)
        ctl["randomisation"] = res
        row.update(randomisation_columns(res))
    attribution = json.loads((folder / "attribution.json").read_text())
    write_folder(folder, clip, attribution, ctl, row)
    return row


def stratified_modes(args) -> list[str]:
    """Zeroing always (the table's main columns), then the other modes asked."""
    return ["zero"] + [m for m in args.modes if m != "zero"]


def stratified_kinds(args) -> list[str]:
    """Deletion always, then insertion if asked."""
    return ["deletion"] + [k for k in args.kinds if k != "deletion"]


def stratified_part_columns(st: dict) -> dict:
    """Every optional mode and kind of a stratified control's result as row columns."""
    cols = {}
    m = st["modes"]
    if "noise" in m:
        cols.update(stratified_columns(m["noise"]["deletion"], "_noise"))
    if "insertion" in m["zero"]:
        cols.update(stratified_columns(m["zero"]["insertion"], "_ins"))
    if "insertion" in m.get("noise", {}):
        cols.update(stratified_columns(m["noise"]["insertion"], "_noise_ins"))
    return cols


def refresh_parts(folder: Path, row: dict) -> dict:
    """A saved row with the stratified parts its folder's controls.json holds (an older row may lack columns)."""
    st = json.loads((folder / "controls.json").read_text()).get("stratified")
    return {**row, **stratified_part_columns(st)} if st else row


def run_clip(clip: Path, out: Path, args, model, blind: bool, randomise: bool = False) -> list[dict]:
    """Every method on one clip; each method's row is kept in OUT/CLIP/METHOD/row.json and reused by a rerun."""
    samples = load_audio(clip)
    feats = features(samples)
    fft, mag = feats["fft"], feats["magnitude"]
    T = fft.shape[1]
    words = find_words(clip, 0.0, T * 0.01 + 0.015)
    transcript, _ = find_transcript(clip)
    scorer = Scorer(fft, mag, model, "posteriors", noise="relative", transcript=transcript, batch=16)
    print(f"{clip.name}: T = {T}, clean decoding {scorer.clean_text!r}", flush=True)
    reference = None  # energy's and a random order's global gaps: the same for every method, computed once
    opts = options(args)
    rows = []
    for name in args.methods:
        saved = out / name / "row.json"
        if not saved.is_file() and (out / name / "controls.json").is_file():
            upgrade(out / name, clip, name)  # a folder of this script's first layout (row inside controls.json)
        wanted = [part for part, on in (("noise", "noise" in args.modes), ("insertion", "insertion" in args.kinds),
                                        ("randomisation", randomise)) if on]
        if saved.is_file() and not args.again:
            row = refresh_parts(out / name, json.loads(saved.read_text()))
            missing = [part for part in wanted if row.get(PART_COLUMNS[part]) is None]
            if missing:
                print(f"  {name}: adding {', '.join(missing)} from the saved map", flush=True)
                row = add_parts(out / name, clip, row, missing, fft, mag, model, scorer, opts[name], feats, name, args)
            rows.append(row)
            continue
        if reference is None:
            reference = global_gaps(scorer, {"energy": tie_broken_order(mag, 0),
                                             "random": np.random.default_rng([0, 7, 0]).permutation(mag.size)}, args.step)
        method = make_method("mask" if name == "faithful" else name, model, **opts[name])
        t0 = time.perf_counter()
        a = method.attribute(feats, progress=args.progress)
        a.save(out / name)
        bound = -math.log(method.config.m_max) if name in ("mask", "faithful") and method.config.m_max else None
        ctl = evaluate_map(fft, model, a.importance, magnitude=mag, words=words, bound=bound, transcript=transcript,
                           scorer=scorer, modes=stratified_modes(args), kinds=stratified_kinds(args),
                           noise_kind=args.noise_kind, noise_level=args.noise_level)
        gap = global_gaps(scorer, {"map": tie_broken_order(a.importance, 0)}, args.step)["map"]
        row = {"clip": clip.stem, "method": name, "seconds": round(a.seconds, 2), "forwards": a.extras.get("forwards"),
               **stratified_columns(ctl["stratified"]["modes"]["zero"]["deletion"], ""),
               **stratified_part_columns(ctl["stratified"]),
               "gap": gap, "gap_energy": reference["energy"], "gap_random": reference["random"],
               "tied_share": ctl["ties"]["most_common_share"],
               "spearman_energy": spearman(a.importance, np.log(np.maximum(mag, 1e-12)))}
        pl = ctl.get("plausibility")
        if pl:
            row["top10_in_words"] = pl["map"].get("top10_in_words")
            row["top10_in_words_energy"] = pl["energy"].get("top10_in_words")
        if blind and (name != "rise" or args.blind_rise):
            for lo, hi in BANDS:
                kind = "mask" if name == "faithful" else name
                res = blind_test(fft, model, lambda bm, seed: make_method(kind, bm, **opts[name]).attribute(feats).importance,
                                 band=(lo, hi), magnitude=mag, leaky=args.blind_leaky)
                row[f"blind_{lo}_{hi - 1}"] = res["map_top_share"]
                row[f"blind_{lo}_{hi - 1}_energy"] = res["energy_top_share"]
        if randomise:
            res = randomisation_check(model, explainer(name, opts[name], feats), a.importance, mag, scorer.clean_input)
            ctl["randomisation"] = res
            row.update(randomisation_columns(res))
        ctl["global"] = {"metric": "cer_clean", "gap": {"map": gap, "energy": reference["energy"], "random0": reference["random"]},
                         "beats_energy": bool(gap > reference["energy"]),
                         "verdict": f"global deletion/insertion gap {gap:.3f}, energy {reference['energy']:.3f}"}
        write_folder(out / name, clip, a.to_dict(), ctl, row)
        print(f"  {name}: {a.seconds:.1f} s to explain, {time.perf_counter() - t0:.1f} s with the controls; "
              f"most-random {row['most_random']:+.3f}, least-random {row['least_random']:+.3f}, "
              f"most-shifted {row['most_shifted']:+.3f}, gap {row['gap']:.3f} (energy {row['gap_energy']:.3f})", flush=True)
        rows.append(row)
    return rows


def write_folder(folder: Path, clip: Path, attribution: dict, controls: dict, row: dict) -> None:
    """config.json and controls.json as afmask attribute writes them (afmask compare reads them), and row.json."""
    controls = {**controls, "method": attribution["method"], "seconds": attribution["seconds"], "audio": str(clip)}
    config = {"method": attribution["method"], "audio": str(clip), "model": "demo", "settings": attribution["settings"]}
    for name, doc in (("config.json", config), ("controls.json", controls), ("row.json", row)):
        with atomic_write(folder / name) as f:
            f.write(json.dumps(doc, indent=1, default=str).encode())


def upgrade(folder: Path, clip: Path, name: str) -> None:
    """Rewrite a folder of the first layout (controls.json holding row, controls and attribution)."""
    doc = json.loads((folder / "controls.json").read_text())
    row, ctl = doc["row"], doc["controls"]
    ctl["global"] = {"metric": "cer_clean", "gap": {"map": row["gap"], "energy": row["gap_energy"], "random0": row["gap_random"]},
                     "beats_energy": bool(row["gap"] > row["gap_energy"]),
                     "verdict": f"global deletion/insertion gap {row['gap']:.3f}, energy {row['gap_energy']:.3f}"}
    write_folder(folder, clip, doc["attribution"], ctl, row)


def fmt(v, digits=3, sign=False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def summary_table(rows: list[dict], methods: list[str]) -> str:
    """The markdown table: per method, means over clips, and on how many clips each test passes."""
    clips = sorted({r["clip"] for r in rows})

    def vals(m, key):
        return [r[key] for r in rows if r["method"] == m and r.get(key) is not None]

    def mean(m, key, sign=False, digits=3):
        v = vals(m, key)
        return fmt(float(np.mean(v)), digits, sign) if v else "n/a"

    def count(m, pred):
        mine = [r for r in rows if r["method"] == m]
        return f"{sum(bool(pred(r)) for r in mine)}/{len(mine)}"

    energy_gap = float(np.mean([r["gap_energy"] for r in rows])) if rows else float("nan")
    lines = [
        "| method | most - random (> 0) | least - random (<= 0) | most - shifted (> 0, worst shift) | stratified control passes "
        f"| global gap del - ins (energy {fmt(energy_gap)}; beats energy) | blind 0..20: top-20% share (energy) "
        "| blind 60..120 (energy) | top 10% in words (energy) | most common value share | Spearman with log energy | seconds per utterance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        if not [r for r in rows if r["method"] == m]:
            continue
        lines.append(
            f"| {m} | {mean(m, 'most_random', True)} ({count(m, lambda r: (r['most_random'] or 0) > 0)}) "
            f"| {mean(m, 'least_random', True)} ({count(m, lambda r: r['least_random'] is not None and r['least_random'] <= 0)}) "
            f"| {mean(m, 'most_shifted', True)} ({count(m, lambda r: (r['most_shifted_worst'] or 0) > 0)}) "
            f"| {count(m, lambda r: r['stratified_passes'])} "
            f"| {mean(m, 'gap')} ({count(m, lambda r: r['gap'] > r['gap_energy'])}) "
            f"| {mean(m, 'blind_0_20')} ({mean(m, 'blind_0_20_energy')}) | {mean(m, 'blind_60_120')} ({mean(m, 'blind_60_120_energy')}) "
            f"| {mean(m, 'top10_in_words')} ({mean(m, 'top10_in_words_energy')}) "
            f"| {mean(m, 'tied_share')} | {mean(m, 'spearman_energy')} | {mean(m, 'seconds', digits=1)} |")
    lines += more_controls_table(rows, methods, mean, count)
    lines.append("")
    lines.append(f"Means over {len(clips)} clips ({', '.join(clips)}); in brackets, on how many clips the test passes. AUC "
                 "differences of the CER against the clean decoding; energy-stratified deletion by zeroing (deciles, "
                 "2-50 % of every stratum, 3 random seeds, the map rolled by T/3 and 2T/3).")
    return "\n".join(lines) + "\n"


def more_controls_table(rows: list[dict], methods: list[str], mean, count) -> list[str]:
    """The optional parts' table (own-perturbation deletion, insertion, randomisation), where any row has them."""
    parts = [(key, head) for key, head in (
        ("stratified_passes_noise", "deletion by the default mode's own noise: most - random, least - random, worst shift, passes"),
        ("stratified_passes_ins", "insertion: most - random (< 0), least - random (>= 0), worst shift (< 0), passes"),
        ("stratified_passes_noise_ins", "insertion, the rest by the default mode's own noise: most - random, "
                                        "least - random, worst shift, passes"),
        ("rand_passes", "randomisation, within deciles: all layers random, half random, ceiling, passes"))
        if any(r.get(key) is not None for r in rows)]
    if not parts:
        return []
    lines = ["", "| method | " + " | ".join(head for _, head in parts) + " |", "|---" * (len(parts) + 1) + "|"]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        cells = []
        for key, _ in parts:
            have = [r for r in mine if r.get(key) is not None]
            if not have:
                cells.append("n/a")
            elif key == "rand_passes":
                cells.append(f"{mean(m, 'rand_within')}, {mean(m, 'rand_half_within')}, {mean(m, 'rand_ceiling_within')}, "
                             f"{sum(bool(r[key]) for r in have)}/{len(have)}")
            else:
                sfx = key[len("stratified_passes"):]
                cells.append(f"{mean(m, 'most_random' + sfx, True)}, {mean(m, 'least_random' + sfx, True)}, "
                             f"{mean(m, 'most_shifted_worst' + sfx, True)}, {sum(bool(r[key]) for r in have)}/{len(have)}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="compare-methods", help="output folder")
    p.add_argument("--clips", nargs="+", type=Path, default=None, help="audio files (default: the bundled and LibriVox clips)")
    p.add_argument("--methods", nargs="+", default=METHOD_ORDER, choices=METHOD_ORDER)
    p.add_argument("--rise-masks", type=int, default=1000)
    p.add_argument("--ig-steps", type=int, default=50)
    p.add_argument("--smoothgrad-samples", type=int, default=16)
    p.add_argument("--mask-iterations", type=int, default=400)
    p.add_argument("--mask-restarts", type=int, default=None, metavar="N",
                   help="runs of the mask method with seeds 0..N-1, their maps averaged as percentile ranks (default: "
                        "the default mode's)")
    p.add_argument("--mask-set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="the mask method's settings other than the default mode's (e.g. samples=8 lambda_scale=0.05)")
    p.add_argument("--extremal-iterations", type=int, default=300)
    p.add_argument("--extremal-space", choices=["magnitude", "input"], default="magnitude",
                   help="what the extremal masks multiply: the magnitudes (default) or the normalised network input")
    p.add_argument("--blind-leaky", action="store_true",
                   help="blind models in the leaky form (normalised over all points), as measured before the exact form")
    p.add_argument("--blind-rise", action="store_true", help="also run the blind-band test for RISE (two more RISE runs per clip)")
    p.add_argument("--blind-clips", type=int, default=1, metavar="N",
                   help="run the blind-band tests on the first N clips only (each re-explains twice; default 1)")
    p.add_argument("--step", type=float, default=10.0, help="grid step (per cent) of the global deletion/insertion curves")
    p.add_argument("--modes", nargs="+", default=["zero"], choices=["zero", "noise"],
                   help="deletion by zeroing, and by noise too (--noise-kind; default: zero only; noise doubles its cost)")
    p.add_argument("--noise-kind", default=DEFAULT.noise, choices=NOISE_KINDS,
                   help="the noise of --modes noise (default: the default mode's own, %(default)s)")
    p.add_argument("--noise-level", type=float, default=DEFAULT.m_max,
                   help="its level (default: the default mode's bound, %(default)g)")
    p.add_argument("--kinds", nargs="+", default=["deletion"], choices=["deletion", "insertion"],
                   help="the stratified control's deletion and/or insertion (default: deletion)")
    p.add_argument("--randomisation-clips", type=int, default=0, metavar="N",
                   help="run the model randomisation check on the first N clips (each re-explains three times; default 0)")
    p.add_argument("--again", action="store_true", help="recompute methods that already have their row.json")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    clips = args.clips or [c for c in DEFAULT_CLIPS if c.is_file()]
    out = Path(args.out)
    model = demo_model()
    rows = []
    for i, clip in enumerate(clips):
        rows.extend(run_clip(clip, out / clip.stem, args, model, blind=i < args.blind_clips,
                             randomise=i < args.randomisation_clips))
    with atomic_write(out / "results.csv") as f:
        buf = [",".join(COLUMNS)]
        for r in rows:
            buf.append(",".join("" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r.get(c), float) else str(r[c])) for c in COLUMNS))
        f.write(("\n".join(buf) + "\n").encode())
    table = summary_table(rows, args.methods)
    with atomic_write(out / "table.md") as f:
        f.write(table.encode())
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
