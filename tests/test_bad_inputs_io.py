"""Issue 15, points 6-10: bad audio, numbers at the edge, damaged run files, leftovers, piped logs.

One line per case: (case id, how the input is made, argv, exit status, what the output must say).
Every bad input ends in one line ``afmask CMD: error: WHAT: why; what to do`` naming the file, option or key
(exit status 2, no traceback), or in the correct behaviour (the status and output given).

- make: how the input is made in the case's folder (``{f}`` is the made file; see MAKE below);
  several makers are joined by ``+``.
- argv: the command line, with ``{f}`` (the made file), ``{demo}`` (the bundled utterance), ``{out}`` (a folder
  that does not exist yet), ``{run}`` (a copy of an explained and evaluated run), ``{dump}`` (a regress dump),
  ``{arch}``/``{params}`` (the demo model's files), ``{tmp}`` (the case's folder); ``&&`` chains commands.
- expect: substrings of stdout + stderr, ``|``-separated, all required; ``!X``: X must not appear;
  ``@name``: a check of the folder afterwards (CHECK below).

Only the bundled demo model and utterance are used (no ../shared), tiny frame ranges and few iterations.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from afmask.cli import main
from afmask.io import demo_audio, load_audio, save_arrays
from afmask.model.network import demo_paths

DEMO = demo_audio()
ARCH, PARAMS = demo_paths()
FAST = "--no-report --no-progress --iterations 2 --samples 1"
EVAL = "--no-progress --no-sanity --step 25 --percent 50 --random-seeds 1"
REGRESS = "regress {dump} --arch {arch} --params {params}"

CASES = [
    # -- 6: degenerate audio ------------------------------------------------------------------------------------------
    ("a6-400-samples", "wav:noise:400", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|1 frame (400 samples|at least 2|560 samples"),
    ("a6-559-samples", "wav:noise:559", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|1 frame (559 samples|receptive field spans 106 frames"),
    ("a6-560-samples-run", "wav:noise:560", f"explain {{f}} --out {{out}} {FAST}", 0, "2 iterations|warning: |receptive field"),
    ("a6-399-samples", "wav:noise:399", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|399 samples|at least 400"),
    ("a6-frames-5:6", "", f"explain {{demo}} --out {{out}} --frames 5:6 {FAST}", 2, "--frames 5:6 selects 1 frame|at least 2|e.g. --frames 5:111"),
    ("a6-frames-2-frames-run", "", f"explain {{demo}} --out {{out}} --frames 300:302 {FAST}", 0, "2 iterations"),
    ("a6-frames-reversed", "", f"explain {{demo}} --out {{out}} --frames 10:5 {FAST}", 2, "frames 10:5 do not fit"),
    ("a6-frames-beyond-end", "", f"explain {{demo}} --out {{out}} --frames 500:600 {FAST}", 2, "frames 500:600 do not fit|528 frames"),
    ("a6-frames-not-numbers", "", f"explain {{demo}} --out {{out}} --frames a:b {FAST}", 2, "--frames takes START:STOP"),
    ("a6-zero-explain", "wav:zero:16000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav: is digital silence|all its 16000 samples are 0"),
    ("a6-zero-transcribe", "wav:zero:16000", "transcribe {f}", 2, "input.wav: is digital silence"),
    ("a6-zero-features", "wav:zero:16000", "features {f} -o {tmp}/x.npz", 2, "input.wav: is digital silence"),
    ("a6-zero-where-frames-are", "wav:zero-tail:16000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav: is digital silence|the 15920 samples its frames cover"),
    ("a6-dc-explain", "wav:dc:16000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|same spectrum|DC offset|hears nothing"),
    ("a6-dc-transcribe-warns", "wav:dc:16000", "transcribe {f}", 0, "warning: |input.wav|same spectrum|not meaningful"),
    ("a6-dc-features-warns", "wav:dc:16000", "features {f} -o {tmp}/x.npz", 0, "warning: |same spectrum|wrote "),
    ("a6-steady-tone", "wav:sine:16000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|same spectrum|steady tone"),
    ("a6-below-rounding-70dB", "wav:demo-70dB:24000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|rounding of its samples|hears nothing|of 32768"),
    ("a6-near-silent-60dB-warns", "wav:demo-60dB:24000", f"explain {{f}} --out {{out}} {FAST}", 0, "warning: |near-silent|2 iterations"),
    ("a6-lsb-noise-warns", "wav:lsb:8000", f"explain {{f}} --out {{out}} {FAST}", 0, "warning: |near-silent|not meaningful"),
    ("a6-near-silent-not-meaningful", "wav:demo-60dB:24000", f"explain {{f}} --out {{out}} {FAST} && report {{out}} --model demo {EVAL}", 0, "NOT MEANINGFUL: the model hears nothing|near-silent|!(passes)|!REVERSED|!beats"),
    ("a6-float-quiet-is-heard", "wav:float-quiet:24000", "transcribe {f}", 0, "!warning"),
    ("a6-8bit-is-heard", "wav:8bit:24000", "transcribe {f}", 0, "!warning"),
    ("a6-nan-samples", "wav:nan:16000", "transcribe {f}", 2, "input.wav|NaN or infinite|first at sample 100"),
    ("a6-inf-samples", "wav:inf:16000", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav|NaN or infinite"),
    ("a6-stereo", "wav:stereo:16000", "transcribe {f}", 2, "input.wav: has 2 channels|--channel"),
    ("a6-stereo-channel-1", "wav:stereo:16000", "transcribe {f} --channel 1", 0, "!error"),
    ("a6-stereo-channel-5", "wav:stereo:16000", "transcribe {f} --channel 5", 2, "input.wav: channel=5 is not one of its 2"),
    ("a6-mono-channel-minus-1", "wav:noise:16000", "transcribe {f} --channel -1", 2, "channel=-1"),
    ("a6-8kHz", "wav:rate8k:8000", "transcribe {f}", 2, "input.wav: sample rate is 8000 Hz|--resample"),
    ("a6-8kHz-resampled", "wav:rate8k:8000", "transcribe {f} --resample", 0, "!error"),
    ("a6-clipped", "wav:clip:16000", "transcribe {f}", 2, "input.wav|clipped|--allow-clipping"),
    ("a6-truncated-wav", "truncated-wav", "transcribe {f}", 0, "warning: |input.wav|header says 48000 frames, only 15985 are present"),
    ("a6-truncated-wav-odd-byte", "truncated-wav:1", "transcribe {f}", 0, "header says 48000 frames, only 15985"),
    ("a6-truncated-wav-explain", "truncated-wav", f"explain {{f}} --out {{out}} --frames 10:40 {FAST}", 0, "header says 48000 frames, only 15985|2 iterations"),
    ("a6-wav-header-only", "truncated-wav:-31970", "transcribe {f}", 2, "header says 48000 frames, only 0|contains no samples"),
    ("a6-empty-file", "bytes:empty", "transcribe {f}", 2, "input.wav: file is empty (0 bytes)"),
    ("a6-text-renamed-wav", "bytes:text", f"explain {{f}} --out {{out}} {FAST}", 2, "input.wav: libsndfile cannot read it|Format not recognised"),
    ("a6-flac-corrupt", "flac:corrupt", "transcribe {f}", 2, "input.flac: libsndfile cannot read it"),
    ("a6-flac-truncated", "flac:truncated", "transcribe {f}", 2, "input.flac: libsndfile cannot read it"),
    ("a6-missing-audio", "", f"explain {{tmp}}/nope.wav --out {{out}} {FAST}", 2, "nope.wav: no such file"),
    ("a6-audio-is-folder", "folder", "transcribe {f}", 2, "input.wav: is a folder"),
    ("a6-audio-through-a-file", "wav:noise:16000", "transcribe {f}/x.wav", 2, "input.wav/x.wav: no such file"),
    # -- 7: numbers at the edge -------------------------------------------------------------------------------------
    ("n7-rtol-negative", "dump", f"{REGRESS} --rtol -1", 2, "--rtol -1.0|finite number >= 0"),
    ("n7-rtol-nan", "dump", f"{REGRESS} --rtol nan", 2, "--rtol nan|finite number >= 0"),
    ("n7-rtol-inf", "dump", f"{REGRESS} --rtol inf", 2, "--rtol inf"),
    ("n7-rtol-text", "dump", f"{REGRESS} --rtol abc", 2, "--rtol: invalid float value"),
    ("n7-rtol-0-exact-replay", "dump", f"{REGRESS} --rtol 0", 0, "PASS|input"),
    ("n7-dump-lambda-nan", "dump:lambda=nan", REGRESS, 2, "dump.af|'lambda' is nan"),
    ("n7-dump-lambda-inf", "dump:lambda=inf", REGRESS, 2, "dump.af|'lambda' is inf"),
    ("n7-dump-lr-nan", "dump:lr=nan", REGRESS, 2, "dump.af|'lr' is nan"),
    ("n7-dump-m-nan", "dump:m=nan", REGRESS, 2, "dump.af|'m' holds 1 NaN or infinite value"),
    ("n7-dump-eps-inf", "dump:eps=inf", REGRESS, 2, "'eps' holds 1 NaN"),
    ("n7-dump-variant-half", "dump:variant=0.5", REGRESS, 2, "'variant' must be 0 (letters) or 1 (pitfall), got 0.5"),
    ("n7-dump-lacks-lr", "dump:lr=del", REGRESS, 2, "dump.af|lacks required key(s) lr"),
    ("n7-dump-is-text", "dump:text", REGRESS, 2, "dump.af"),
    ("n7-dump-empty", "dump:empty", REGRESS, 2, "dump.af"),
    ("n7-dump-truncated", "dump:truncated", REGRESS, 2, "dump.af"),
    ("n7-dump-is-folder", "dump:folder", REGRESS, 2, "dump.af: is a folder|(DUMP)"),
    ("n7-dump-missing", "", "regress {tmp}/none.af --arch {arch} --params {params}", 2, "none.af: no such file (DUMP)"),
    ("n7-arch-missing", "dump", "regress {dump} --arch {tmp}/no.arch --params {params}", 2, "no.arch: no such file (--arch)"),
    ("n7-percent-0", "run", "report {run} --model demo --percent 0", 2, "--percent 0|strictly between 0 and 100"),
    ("n7-percent-100", "run", "report {run} --evaluate --percent 100", 2, "--percent 100"),
    ("n7-percent-nan", "run", "report {run} --evaluate --percent nan", 2, "--percent nan"),
    ("n7-soft-db-inf", "run", "report {run} --evaluate --soft-db inf", 2, "--soft-db inf|finite number of dB"),
    ("n7-soft-db-negative", "run", "report {run} --evaluate --soft-db -3", 2, "--soft-db -3"),
    ("n7-step-0", "run", "report {run} --evaluate --step 0", 2, "--step 0|must divide 50"),
    ("n7-step-tiny", "run", "report {run} --evaluate --step 0.001", 2, "--step 0.001|between 0.5 and 50"),
    ("n7-step-7", "run", "report {run} --evaluate --step 7", 2, "--step 7"),
    ("n7-step-nan", "run", "report {run} --evaluate --step nan", 2, "--step nan"),
    ("n7-random-seeds-0", "run", "report {run} --evaluate --random-seeds 0", 2, "--random-seeds 0|>= 1"),
    ("n7-random-seeds-huge", "run", "report {run} --evaluate --random-seeds 1000000", 2, "--random-seeds 1000000|<= 100"),
    ("n7-sanity-iterations-0", "run", "report {run} --evaluate --sanity-iterations 0", 2, "--sanity-iterations 0"),
    ("n7-sanity-levels-0", "run", "report {run} --evaluate --sanity-levels -2", 2, "--sanity-levels -2"),
    ("n7-transcript-missing", "run", "report {run} --evaluate --transcript {tmp}/no.txt", 2, "no.txt: no such transcript file (--transcript)"),
    ("n7-bench-budget-nan", "", "bench kernel --budget nan", 2, "--budget nan"),
    ("n7-bench-budget-negative", "", "bench kernel --budget -1", 2, "--budget -1"),
    ("n7-bench-repeats-0", "", "bench kernel --repeats 0", 2, "--repeats 0"),
    ("n7-bench-frames-huge", "", "bench kernel --frames 100000000", 2, "--frames 100000000|GB|lower --frames"),
    ("n7-bench-frames-0", "", "bench kernel --frames 0", 2, "--frames"),
    ("n7-bench-mask-frames-1", "", "bench mask --frames 1", 2, "--frames 1|at least 2"),
    ("n7-bench-mask-cap-0", "", "bench mask --cap 0", 2, "--cap 0"),
    ("n7-emissions-bad-extension", "", "transcribe {demo} --emissions {tmp}/e.txt", 2, "e.txt|--emissions needs one of .npy"),
    ("n7-emissions-folder-missing", "", "transcribe {demo} --emissions {tmp}/no/e.npy", 2, "e.npy: folder|does not exist"),
    ("n7-features-bad-extension", "", "features {demo} -o {tmp}/x.txt", 2, "x.txt: -o needs an .af or .npz"),
    ("n7-features-folder-missing", "", "features {demo} -o {tmp}/no/x.npz", 2, "x.npz: folder|does not exist"),
    ("n7-compare-labels-mismatch", "run", "compare {run} {run} --labels one", 2, "1 labels for 2 run folders"),
    ("n7-compare-not-html", "run", "compare {run} -o {tmp}/c.txt", 2, "c.txt|must end in .html"),
    ("n7-compare-missing-folder", "", "compare {tmp}/none", 2, "none: no such run folder"),
    ("n7-compare-unevaluated", "run:delete:evaluation.json", "compare {run}", 2, "no evaluation.json|--model demo"),
    # -- 8: damaged run files -----------------------------------------------------------------------------------------
    ("c8-features-truncated", "run:truncate:features.npz", "report {run}", 2, "features.npz: is not a readable .npz|--resume"),
    ("c8-features-garbage", "run:garbage:features.npz", "report {run}", 2, "features.npz: is not a readable .npz"),
    ("c8-features-lacks-samples", "run:npz-drop:features.npz:samples", "report {run}", 2, "features.npz: lacks the array(s) samples"),
    ("c8-features-is-folder", "run:folder:features.npz", "report {run}", 2, "features.npz: is a folder"),
    ("c8-evaluation-no-curves", "run:json-drop:evaluation.json:curves", "report {run}", 2, "evaluation.json|lacks 'curves'|--model demo"),
    ("c8-evaluation-no-verdict", "run:json-drop:evaluation.json:verdict", "report {run}", 2, "evaluation.json|lacks 'verdict'"),
    ("c8-evaluation-curves-list", "run:json-set:evaluation.json:curves=[]", "report {run}", 2, "evaluation.json|curves is a list"),
    ("c8-evaluation-deep-key", "run:json-drop:evaluation.json:curves.explanation.deletion", "report {run}", 2, "lacks 'curves.explanation.deletion'"),
    ("c8-evaluation-rendition-broken", "run:json-set:evaluation.json:renditions=[1]", "report {run}", 2, "renditions[0] is not an object"),
    ("c8-evaluation-sanity-broken", "run:json-set:evaluation.json:sanity={}", "report {run}", 2, "lacks 'sanity.levels'"),
    ("c8-evaluation-not-json", "run:garbage:evaluation.json", "report {run}", 2, "evaluation.json: is not|evaluate the run again"),
    ("c8-evaluation-truncated", "run:truncate:evaluation.json", "report {run}", 2, "evaluation.json: is not valid JSON"),
    ("c8-evaluation-is-list", "run:json-whole:evaluation.json:[1]", "report {run}", 2, "evaluation.json: holds a JSON list"),
    ("c8-evaluation-format", "run:json-set:evaluation.json:format=1", "report {run}", 2, "evaluation.json: evaluation format 1"),
    ("c8-evaluation-no-curves-compare", "run:json-drop:evaluation.json:curves", "compare {run}", 2, "evaluation.json|lacks 'curves'"),
    ("c8-evaluation-curve-not-list", "run:json-set:evaluation.json:curves.energy.insertion.x=\"abc\"", "report {run}", 2, "curves.energy.insertion.x is str, expected a list"),
    ("c8-evaluation-empty-curve", "run:json-set:evaluation.json:curves.explanation.deletion.cer_transcript=[]", "report {run}", 2, "evaluation.json: is damaged or from another version (IndexError"),
    ("c8-summary-damaged-is-optional", "run:garbage:summary.json", "report {run}", 0, "afmask report: wrote"),
    ("c8-m-truncated", "run:truncate:m.npy", "report {run}", 2, "m.npy: is not a readable .npy|--resume"),
    ("c8-m-garbage", "run:garbage:m.npy", "report {run}", 2, "m.npy: is not a readable .npy"),
    ("c8-m-missing", "run:delete:m.npy", "report {run}", 2, "no m.npy"),
    ("c8-m-no-checkpoint", "run:truncate:m.npy+run:delete:checkpoint.npz", "report {run}", 2, "m.npy|explain the audio again"),
    ("c8-config-not-json", "run:garbage:config.json", "report {run}", 2, "config.json: is not|--resume"),
    ("c8-config-truncated", "run:truncate:config.json", "report {run}", 2, "config.json: is not valid JSON"),
    ("c8-config-is-list", "run:json-whole:config.json:[]", "report {run}", 2, "config.json: holds settings afmask cannot use"),
    ("c8-config-bad-mode", "run:json-set:config.json:mode=\"nope\"", "report {run}", 2, "config.json: holds settings afmask cannot use|nope"),
    ("c8-log-bad-number", "run:text:log.csv:iteration,total\n0,abc\n", "report {run}", 2, "log.csv|lacks the column"),
    ("c8-log-not-a-number", "run:log-cell:abc", "report {run}", 2, "log.csv: line 2|abc"),
    ("c8-log-ragged", "run:log-ragged", "report {run}", 2, "log.csv: line 2 has"),
    ("c8-log-binary", "run:garbage:log.csv", "report {run}", 2, "log.csv"),
    ("c8-log-empty", "run:text:log.csv:", "report {run}", 2, "log.csv: lacks the column"),
    ("c8-run-is-a-file", "bytes:text", "report {f}", 2, "input.wav: is a file, not a run folder"),
    ("c8-run-missing", "", "report {tmp}/none", 2, "none: no such run folder"),
    ("c8-checkpoint-truncated-resume", "run:truncate:checkpoint.npz", f"explain {{demo}} --out {{run}} --frames 100:220 --resume {FAST}", 2, "checkpoint.npz: is not a readable .npz|cannot be resumed"),
    ("c8-checkpoint-no-meta-resume", "run:npz-drop:checkpoint.npz:meta", f"explain {{demo}} --out {{run}} --frames 100:220 --resume {FAST}", 2, "checkpoint.npz: is not an afmask checkpoint"),
    # -- 9: leftovers ----------------------------------------------------------------------------------------------------
    ("l9-stale-temporaries-swept", "run+stale", "explain {demo} --out {run} --frames 100:220 --resume --no-report --no-progress --iterations 3 --samples 1", 0, "@stale-gone"),
    ("l9-foreign-files-kept", "run+foreign", "explain {demo} --out {run} --frames 100:220 --resume --no-report --no-progress --iterations 3 --samples 1", 0, "@foreign-kept"),
    ("l9-live-writer-kept", "run+live", "explain {demo} --out {run} --frames 100:220 --resume --no-report --no-progress --iterations 3 --samples 1", 0, "@live-kept"),
    ("l9-staging-swept-by-evaluation", "run+stale", f"report {{run}} --model demo {EVAL}", 0, "@stale-gone"),
    ("l9-failed-run-leaves-no-folder", "patch:loop-fails", f"explain {{demo}} --out {{tmp}}/new/deeper --frames 100:110 {FAST}", 2, "planted failure|@no-new-folder"),
    ("l9-failed-run-keeps-given-folder", "patch:loop-fails+folder:given", f"explain {{demo}} --out {{tmp}}/given --frames 100:110 {FAST}", 2, "planted failure|@given-kept"),
    ("l9-out-is-a-file", "bytes:text", f"explain {{demo}} --out {{f}} --frames 100:110 {FAST}", 2, "input.wav: is a file, not a run folder (--out)"),
    ("l9-disk-full-explain", "patch:disk-full", f"explain {{demo}} --out {{out}} --frames 100:110 {FAST}", 2, "cannot write|(the explanation)|No space left on device|free space|!Traceback"),
    ("l9-disk-full-features", "patch:disk-full", "features {demo} -o {tmp}/x.npz", 2, "cannot write|x.npz|No space left|@no-temporaries"),
    ("l9-disk-full-evaluation", "run+patch:disk-full", f"report {{run}} --model demo {EVAL}", 2, "cannot write|(the evaluation)|No space left|@no-staging"),
    # -- 10: logs ------------------------------------------------------------------------------------------------------
    ("p10-explain-piped-plain-lines", "", "explain {demo} --out {out} --frames 100:120 --no-report --iterations 20 --samples 1", 0, "afmask default:  50% (10/20 it|afmask default: 100% (20/20 it|!\r"),
    ("p10-evaluation-piped-no-0pass", "run", "report {run} --model demo --step 25 --percent 50 --random-seeds 1 --sanity-iterations 1 --sanity-levels 1", 0, "sanity check: 100% (2/2 pass|!0pass|!\r"),
]


# -- inputs ---------------------------------------------------------------------------------------------------------------
def _demo(n: int) -> np.ndarray:
    return load_audio(DEMO)[16000 : 16000 + n]


def _q16(x: np.ndarray) -> np.ndarray:
    return (np.round(np.asarray(x, np.float64) * 32768) / 32768).astype(np.float32)


def _signal(kind: str, n: int) -> tuple[np.ndarray, int, str]:
    """(samples, rate, subtype) of a generated input."""
    rng = np.random.default_rng(0)
    t = np.arange(n) / 16000
    if kind == "noise":
        return (0.1 * rng.standard_normal(n)).astype(np.float32), 16000, "PCM_16"
    if kind == "zero":
        return np.zeros(n, np.float32), 16000, "PCM_16"
    if kind == "zero-tail":  # the one sample that is not 0 lies after the last full frame
        x = np.zeros(n, np.float32)
        x[-1] = 0.5
        return x, 16000, "PCM_16"
    if kind == "dc":
        return np.full(n, 0.3, np.float32), 16000, "PCM_16"
    if kind == "sine":  # 1 kHz: 10 periods per hop, every frame the same
        return _q16(0.3 * np.sin(2 * np.pi * 1000 * t)), 16000, "PCM_16"
    if kind.startswith("demo-"):
        gain = 10 ** (-float(kind[5:-2]) / 20) * 0.6  # dB below the utterance's level (about 0.5 of full scale)
        return _q16(_demo(n) * gain), 16000, "PCM_16"
    if kind == "lsb":
        return (rng.integers(-1, 2, n) / 32768).astype(np.float32), 16000, "PCM_16"
    if kind == "float-quiet":
        return (_demo(n) * 3e-4).astype(np.float32), 16000, "FLOAT"
    if kind == "8bit":
        return (np.round(_demo(n) * 128) / 128).astype(np.float32), 16000, "PCM_U8"
    if kind in ("nan", "inf"):
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        x[100] = np.nan if kind == "nan" else np.inf
        return x, 16000, "FLOAT"
    if kind == "stereo":
        return np.stack([0.1 * rng.standard_normal(n), 0.2 * rng.standard_normal(n)], 1).astype(np.float32), 16000, "PCM_16"
    if kind == "rate8k":
        return (0.1 * rng.standard_normal(n)).astype(np.float32), 8000, "PCM_16"
    if kind == "clip":
        return np.where(rng.random(n) < 0.01, 1.0, 0.1 * rng.standard_normal(n)).astype(np.float32), 16000, "FLOAT"
    raise ValueError(kind)


def _wav(tmp, kind, n):
    x, rate, subtype = _signal(kind, int(n))
    sf.write(tmp / "input.wav", x, rate, subtype=subtype)


def _truncated_wav(tmp, extra="0"):
    """48000 frames in the header; 15985 present (plus ``extra`` bytes: 1 an odd byte, -31970 none at all)."""
    sf.write(tmp / "input.wav", (0.1 * np.random.default_rng(1).standard_normal(48000)).astype(np.float32), 16000,
             subtype="PCM_16")
    data = (tmp / "input.wav").read_bytes()
    (tmp / "input.wav").write_bytes(data[: 44 + 2 * 15985 + int(extra)])


def _flac(tmp, how):
    path = tmp / "input.flac"
    sf.write(path, (0.1 * np.random.default_rng(2).standard_normal(48000)).astype(np.float32), 16000, subtype="PCM_16")
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 3])
    else:
        noise = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        path.write_bytes(data[:200] + noise + data[5200:])
    return path


def _bytes(tmp, what):
    (tmp / "input.wav").write_bytes(b"" if what == "empty" else b"this is not audio\n" * 10)


def _dump(tmp, how=""):
    """A dump afmask's own replay reproduces exactly (demo model, 4 frames), then damaged as ``how`` says."""
    from afmask.mask.regress import replay
    from afmask.model import demo_model

    path = tmp / "dump.af"
    if how == "folder":
        path.mkdir()
        return
    if how in ("text", "empty"):
        path.write_bytes(b"" if how == "empty" else b"not an arrayfire file\n")
        return
    from afmask.features import features

    rng = np.random.default_rng(4)
    fft = features(_demo(1040))["fft"]
    d = {"fft": fft, "m": np.full(fft.shape, 0.1, np.float32), "eps": rng.standard_normal(fft.shape).astype(np.float32),
         "lambda": np.array([10.0], np.float32), "lr": np.array([0.001], np.float32), "variant": np.array([0.0], np.float32)}
    _, got = replay(d, demo_model(), rtol=0.0)
    d["input"] = got["input"]
    if "=" in how:
        key, value = how.split("=")
        if value == "del":
            del d[key]
        elif key in ("m", "eps"):
            d[key] = d[key].copy()
            d[key][3, 1] = float(value)
        else:
            d[key] = np.array([float(value)], np.float32)
    save_arrays(path, d)
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def _json_path(doc, dotted):
    keys = dotted.split(".")
    for k in keys[:-1]:
        doc = doc[k]
    return doc, keys[-1]


def _run(tmp, op=None, name=None, arg=None, *, evaluated):
    run = tmp / "run"
    if not run.exists():
        shutil.copytree(evaluated, run)
    if op is None:
        return
    path = run / name if name else None
    if op == "delete":
        path.unlink()
    elif op == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif op == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif op == "folder":
        path.unlink()
        path.mkdir()
    elif op == "text":
        path.write_text(arg or "")
    elif op == "npz-drop":
        with np.load(path, allow_pickle=False) as z:
            kept = {k: z[k] for k in z.files if k != arg}
        with zipfile.ZipFile(path, "w") as zf:
            for k, v in kept.items():
                with zf.open(k + ".npy", "w") as f:
                    np.lib.format.write_array(f, v)
    elif op in ("json-drop", "json-set", "json-whole"):
        doc = json.loads(path.read_text())
        if op == "json-whole":
            doc = json.loads(arg)
        elif op == "json-drop":
            parent, key = _json_path(doc, arg)
            del parent[key]
        else:
            dotted, value = arg.split("=", 1)
            parent, key = _json_path(doc, dotted)
            parent[key] = json.loads(value)
        path.write_text(json.dumps(doc))
    elif op == "log-cell":
        lines = (run / "log.csv").read_text().splitlines()
        cells = lines[1].split(",")
        cells[2] = name
        (run / "log.csv").write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
    elif op == "log-ragged":
        lines = (run / "log.csv").read_text().splitlines()
        (run / "log.csv").write_text("\n".join([lines[0], lines[1] + ",1,2"] + lines[2:]) + "\n")
    else:
        raise ValueError(op)


#: Leftovers a killed run leaves (old mtime, writer gone), and files afmask must never touch.
OLD = time.time() - 3600
STALE = [".m.npy.999999999-0123456789ab.tmp", ".features.npz.0123456789ab.tmp", ".evaluation.999999999-abc_123",
         ".evaluation.k2x9q0_z"]
FOREIGN = [".m.npy.tmp", "notes.tmp", ".evaluation", "sub/.m.npy.999999999-0123456789ab.tmp", ".x.0123456789ab.tmp.bak"]


def _place(run, names, mtime=OLD):
    for name in names:
        p = run / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if name.startswith(".evaluation.") and "/" not in name:
            p.mkdir()
            (p / "renditions").mkdir()
            (p / "renditions" / "x.flac").write_bytes(b"partial")
        else:
            p.write_bytes(b"partial")
        os.utime(p, (mtime, mtime))


def _leftovers(tmp, kind, *, evaluated):
    _run(tmp, evaluated=evaluated)
    run = tmp / "run"
    if kind == "stale":
        _place(run, STALE)
    elif kind == "foreign":
        _place(run, FOREIGN)
    elif kind == "live":  # a writer that is still running (this process), and a file newer than this process
        _place(run, [f".m.npy.{os.getpid()}-0123456789ab.tmp", f".evaluation.{os.getpid()}-live_1"])
        _place(run, [".log.csv.888888888-0123456789ab.tmp"], mtime=time.time() + 3600)


def _patch(tmp, what, *, monkeypatch):
    if what == "loop-fails":
        from afmask.mask import run as run_mod

        def fail(self, progress=True):
            raise RuntimeError("planted failure in the loop")

        monkeypatch.setattr(run_mod.MaskRun, "run", fail)
    elif what == "disk-full":
        def full(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", full)
    else:
        raise ValueError(what)


def _folder(tmp, name="input.wav"):
    (tmp / name).mkdir()


MAKE = {"wav": _wav, "truncated-wav": _truncated_wav, "flac": _flac, "bytes": _bytes, "dump": _dump, "run": _run,
        "stale": _leftovers, "foreign": _leftovers, "live": _leftovers, "patch": _patch, "folder": _folder}


def _make(spec: str, tmp, evaluated, monkeypatch) -> str:
    """Make the inputs ``spec`` names in ``tmp``; returns the path of {f}."""
    f = tmp / "input.wav"
    for part in filter(None, spec.split("+")):
        name, *args = part.split(":", 3) if part.startswith("run:") else part.split(":")
        if name == "run":
            _run(tmp, *args, evaluated=evaluated)
        elif name in ("stale", "foreign", "live"):
            _leftovers(tmp, name, evaluated=evaluated)
        elif name == "patch":
            _patch(tmp, *args, monkeypatch=monkeypatch)
        elif name == "folder" and args:
            (tmp / args[0]).mkdir()
        else:
            made = MAKE[name](tmp, *args)
            if name == "flac":
                f = made
    return str(f)


# -- checks of the folder afterwards ----------------------------------------------------------------------------------------
def _stale_gone(tmp):
    left = [n for n in STALE if (tmp / "run" / n).exists()]
    assert not left, f"stale temporaries not swept: {left}"


def _foreign_kept(tmp):
    gone = [n for n in FOREIGN if not (tmp / "run" / n).exists()]
    assert not gone, f"files that are not afmask's stale temporaries were removed: {gone}"


def _live_kept(tmp):
    run = tmp / "run"
    for n in (f".m.npy.{os.getpid()}-0123456789ab.tmp", f".evaluation.{os.getpid()}-live_1", ".log.csv.888888888-0123456789ab.tmp"):
        assert (run / n).exists(), n


def _no_new_folder(tmp):
    assert not (tmp / "new").exists(), "the failed run left the folders it created"


def _given_kept(tmp):
    assert (tmp / "given").is_dir(), "a folder the user made must stay"


def _no_temporaries(tmp):
    left = [p.name for p in tmp.iterdir() if p.name.endswith(".tmp")]
    assert not left, left


def _no_staging(tmp):
    left = [p.name for p in (tmp / "run").iterdir() if p.name.startswith(".evaluation.")]
    assert not left, left


CHECK = {"stale-gone": _stale_gone, "foreign-kept": _foreign_kept, "live-kept": _live_kept, "no-new-folder": _no_new_folder,
         "given-kept": _given_kept, "no-temporaries": _no_temporaries, "no-staging": _no_staging}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """An explained and evaluated run of the bundled utterance (demo model, frames 100:220, 3 iterations)."""
    from afmask.api import evaluate_and_report, explain
    from afmask.evaluate import EvaluationSettings
    from afmask.mask import MaskConfig

    out = tmp_path_factory.mktemp("evaluated") / "run"
    explain(DEMO, out, config=MaskConfig.preset("default", iterations=3, samples=1), progress=False, frames=(100, 220))
    evaluate_and_report(out, progress=False, settings=EvaluationSettings(
        percents=(50.0,), step=25.0, random_seeds=1, sanity_iterations=2, sanity_levels=1))
    return out


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("case, make, argv, rc, expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, make, argv, rc, expect, tmp_path, capsys, monkeypatch, request):
    needs_run = "run" in make.replace("truncated", "") or "{run}" in argv
    evaluated = request.getfixturevalue("evaluated") if needs_run else None
    f = _make(make, tmp_path, evaluated, monkeypatch)
    values = {"f": f, "demo": str(DEMO), "out": str(tmp_path / "out"), "run": str(tmp_path / "run"),
              "dump": str(tmp_path / "dump.af"), "arch": str(ARCH), "params": str(PARAMS), "tmp": str(tmp_path)}
    out = err = ""
    for command in argv.split(" && "):
        words = [w.format(**values) for w in shlex.split(command)]
        got, o, e = _cli(words, capsys)
        out, err = out + o, err + e
        if got != 0:
            break
    text = out + err
    assert got == rc, f"{case}: exit status {got}, expected {rc}\n{text}"
    assert "Traceback" not in text
    if rc == 2 and "usage:" not in err:
        errors = [line for line in err.splitlines() if ": error: " in line]
        command = words[0]
        assert len(errors) == 1 and errors[0].startswith(f"afmask {command}: error: "), err
        assert err.rstrip().splitlines()[-1] == errors[0], "the error is the last line"
    for want in filter(None, expect.split("|")):
        if want.startswith("@"):
            CHECK[want[1:]](tmp_path)
        elif want.startswith("!"):
            assert want[1:] not in text, f"{case}: {want[1:]!r} must not appear in\n{text}"
        else:
            assert want in text, f"{case}: {want!r} not in\n{text}"


# -- the progress display itself -----------------------------------------------------------------------------------------
def test_plain_progress_prints_a_line_per_tenth_and_the_last(capsys):
    from afmask.io.progress import PlainProgress

    bar = PlainProgress(total=1000, desc="work", unit="it")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("work:  10% (100/1000 it") and lines[-1].startswith("work: 100% (1000/1000")


def test_plain_progress_of_unknown_size_prints_nothing(capsys):
    from afmask.io.progress import PlainProgress

    bar = PlainProgress(total=0, desc="sanity check", unit="pass")
    bar.close()
    assert capsys.readouterr().err == ""


def test_progress_is_a_tqdm_bar_on_a_terminal(monkeypatch):
    import sys

    from tqdm import tqdm

    from afmask.io.progress import PlainProgress, progress_bar

    class Tty:
        def isatty(self):
            return True

        def write(self, s):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = progress_bar(total=3, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.undo()
    assert isinstance(progress_bar(total=3, desc="x"), PlainProgress)  # pytest's captured stderr is no terminal
