"""Featurise the real speech of shared/data/real_speech for training and validation.

Three sources (see that folder's README): LJ Speech (one female reader,
normalised transcripts), AN4 (74 speakers, census answers; spelled letters
are written out as the names one hears, "U" -> "you", "H" -> "aitch"), and
251 LibriSpeech train-clean-100 utterances with the machine-made Whisper
labels of label.py (labels/librispeech_whisper.tsv).

Held out as the validation split `real_val` (clean, never trained on): 8 AN4
speakers, 26 LibriSpeech speakers (103, the reader of the test utterance
shared/data/librispeech/utt-000000000, among them), and LJ Speech clips
LJ002-0161..0200.
The rest is `real_train`: each utterance once clean (level only) and several
times augmented (augment.py: speed 0.9..1.1, EQ, simulated-room reverb,
noise 5..35 dB SNR), more copies of the sources nearest the held-out
LibriVox read speech (--copies: LibriSpeech 4, LJ Speech 3, AN4 2), so real
speech outweighs the synthetic. Same cache format as make_data.py
(work/data/<split>/index.json + feats.f16; no audio kept).

Usage: nice -n 10 python real_data.py [--real DIR] [--out work/data] [--jobs 2]
"""
import argparse
import csv
import hashlib
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment  # noqa: E402
import common  # noqa: E402

LETTER_NAMES = {
    "A": "ay", "B": "bee", "C": "see", "D": "dee", "E": "ee", "F": "ef", "G": "gee", "H": "aitch",
    "I": "eye", "J": "jay", "K": "kay", "L": "el", "M": "em", "N": "en", "O": "oh", "P": "pee",
    "Q": "cue", "R": "ar", "S": "ess", "T": "tee", "U": "you", "V": "vee", "W": "double you",
    "X": "ex", "Y": "why", "Z": "zee"}
MAX_SECONDS = 20.0
_RIRS = None


def an4_text(raw: str) -> str:
    """AN4 transcript -> 31-token text: a single capital is a spelled letter, said by its name."""
    words = [LETTER_NAMES[w] if len(w) == 1 and w in LETTER_NAMES else w for w in raw.split()]
    return common.normalise_transcript(" ".join(words))


def held_out(key: str, frac: float) -> bool:
    """Deterministic hash split of a speaker/clip key."""
    return int(hashlib.md5(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < frac


def collect(real: str, labels: str):
    """All real utterances: -> list of dicts (id, path, text, source, speaker, val)."""
    out = []
    with open(os.path.join(real, "ljspeech", "metadata.csv"), newline="") as f:
        for row in csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE):
            uid, text = row[0], common.normalise_transcript(row[2])
            if not text or any(c.isdigit() for c in row[2]):
                continue
            val = uid.startswith("LJ002-") and 161 <= int(uid[6:]) <= 200
            out.append({"id": uid, "path": os.path.join(real, "ljspeech", "wavs", uid + ".flac"),
                        "text": text, "source": "ljspeech", "speaker": "lj", "val": val})
    an4_speakers = set()
    with open(os.path.join(real, "an4_train", "transcripts.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    speakers = sorted({uid.split("-")[1] for uid, _ in rows})
    val_spk = set(speakers[3::9])  # 8 of 74 speakers
    for uid, raw in rows:
        spk = uid.split("-")[1]
        an4_speakers.add(spk)
        text = an4_text(raw)
        if text:
            out.append({"id": uid, "path": os.path.join(real, "an4_train", "wav", uid + ".flac"),
                        "text": text, "source": "an4", "speaker": spk, "val": spk in val_spk})
    with open(labels) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]
    ls_spk = sorted({uid.split("-")[0] for uid, _ in rows})
    # 25 of 251 speakers by position, and speaker 103 always (26 in all): shared/data/librispeech/utt-000000000 (a test
    # utterance) continues 103-1240-0000, the same reader in the same chapter.
    ls_val = set(ls_spk[::10]) | {"103"}
    for uid, text in rows:
        spk = uid.split("-")[0]
        out.append({"id": uid, "path": os.path.join(real, "librispeech_train_clean_100_251", uid + ".flac"),
                    "text": text, "source": "librispeech", "speaker": spk, "val": spk in ls_val})
    return out


def _init(rir_path):
    global _RIRS
    _RIRS = augment.make_rir_bank(rir_path)


def work_item(job):
    """One (utterance, copy): -> (job, float16 features (T, 257)) or (job, None)."""
    x, sr = sf.read(job["path"], dtype="float64", always_2d=True)
    if sr != common.SR:
        raise ValueError(f"{job['path']}: sample rate {sr}, expected {common.SR}")
    x = x[:, 0]
    rng = np.random.default_rng(job["seed"])
    if job["copy"] == 0:
        x = x * (10 ** rng.uniform(-0.6, -0.05) / (np.max(np.abs(x)) + 1e-12))
    else:
        x = augment.augment(x, rng, _RIRS, p_reverb=0.4, p_noise=0.6, snr=(5.0, 35.0), p_filter=0.4)
    q = augment.quantise(x)
    if q.shape[0] < 400 or q.shape[0] > MAX_SECONDS * common.SR:
        return job, None
    f = common.features(q.astype(np.float32) / np.float32(32768.0))
    if not np.all(np.isfinite(f)):
        return job, None
    return job, f.astype(np.float16)


def write_split(d: str, jobs, n_proc: int, rir_path: str):
    """Featurise jobs into d (index.json written last marks it complete)."""
    if os.path.exists(os.path.join(d, "index.json")):
        print(f"{d}: already made, skipped", flush=True)
        return
    os.makedirs(d, exist_ok=True)
    t0, index, off = time.time(), [], 0
    with open(os.path.join(d, "feats.f16"), "wb") as ff, Pool(n_proc, _init, (rir_path,)) as pool:
        for k, (job, f) in enumerate(pool.imap(work_item, jobs, chunksize=4)):
            if f is None:
                continue
            ff.write(np.ascontiguousarray(f).tobytes())
            index.append({**job, "engine": job["source"], "voice": job["speaker"],
                          "n_frames": int(f.shape[0]), "feat_offset": off})
            off += f.shape[0]
            if (k + 1) % 1000 == 0:
                print(f"{os.path.basename(d)}: {k + 1}/{len(jobs)} in {time.time() - t0:.0f} s", flush=True)
    hours = off / 100 / 3600
    meta = {"split": os.path.basename(d), "utterances": len(index), "dropped": len(jobs) - len(index),
            "hours": hours, "frames": off, "seconds_to_make": time.time() - t0,
            "features_from": common.FEATURES_FROM, "utts": index}
    with open(os.path.join(d, "index.json.tmp"), "w") as f:
        json.dump(meta, f)
    os.replace(os.path.join(d, "index.json.tmp"), os.path.join(d, "index.json"))
    print(f"{d}: {len(index)} utterances ({len(jobs) - len(index)} dropped), {hours:.2f} h, "
          f"{time.time() - t0:.0f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=os.path.join(common.REPO, "..", "shared", "data", "real_speech"))
    ap.add_argument("--labels", default=os.path.join(common.HERE, "labels", "librispeech_whisper.tsv"))
    ap.add_argument("--out", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--copies", default="librispeech:4,ljspeech:3,an4:2",
                    help="copies per source in real_train (the first clean, the rest augmented)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=4321)
    args = ap.parse_args()
    copies = {k: int(v) for k, v in (c.split(":") for c in args.copies.split(","))}
    utts = collect(args.real, args.labels)
    rng = np.random.default_rng(args.seed)
    rir_path = os.path.join(args.out, "rirs.npz")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    augment.make_rir_bank(rir_path)
    print(f"room impulse responses: {rir_path} ({time.time() - t0:.0f} s)", flush=True)
    val = [{**u, "copy": 0, "seed": int(rng.integers(2**32))} for u in utts if u["val"]]
    train = [{**u, "copy": c, "seed": int(rng.integers(2**32))}
             for u in utts if not u["val"] for c in range(copies[u["source"]])]
    for name, jobs in (("real_val", val), ("real_train", train)):
        by = {}
        for j in jobs:
            by.setdefault(j["source"], set()).add(j["id"])
        print(f"{name}: " + ", ".join(f"{k} {len(v)} utterances" for k, v in sorted(by.items())), flush=True)
        write_split(os.path.join(args.out, name), jobs, args.jobs, rir_path)


if __name__ == "__main__":
    main()
