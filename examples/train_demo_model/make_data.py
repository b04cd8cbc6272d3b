"""Synthesise, augment and featurise the demo model's training and test data.

Speech comes from TTS engines of the Debian archive (espeak-ng, flite,
festival), reading the sentences of sentences.tsv (build_sentences.py).
Everything is resampled to 16 kHz mono, quantised to 16 bits (as a WAV file
read by libsndfile would be), and turned into afmask's network input
(T x 257, normalised), cached as float16 next to the int16 audio.

Splits (work/data/<split>/):
  train      train sentences, training voices, augmented
  val        val sentences, training voices, augmented (model selection)
  test_seen  test sentences, training voices, clean
  test_unseen test sentences, held-out voices (every festival voice, three
             espeak-ng voices with held-out variants), clean
             (the first model also held out flite slt; it trains now)

Augmentation (augment.py) includes reverberation from a bank of rooms
simulated with pyroomacoustics (--rirs FILE.npz, made once if missing).

Usage: nice -n 10 python make_data.py [--train 30000] [--jobs 2]
Needs: apt-get install -y espeak-ng flite festival festvox-kallpc16k
       festvox-kdlpc16k festvox-us-slt-hts sox fortunes fortunes-min
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

import numpy as np
import soundfile as sf
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import augment  # noqa: E402
import common  # noqa: E402

SR = common.SR
ESPEAK_ACCENTS_TRAIN = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029",
                        "en-us-nyc", "en-gb-x-gbclan"]
ESPEAK_VARIANTS_TRAIN = ["", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3",
                         "f4", "klatt", "klatt2", "klatt4"]
FLITE_TRAIN = ["kal", "kal16", "awb", "rms", "slt"]  # slt: the only natural female voice
# Held out from training entirely (test_unseen only).
UNSEEN_VOICES = [("festival", "kal_diphone"), ("festival", "ked_diphone"),
                 ("festival", "cmu_us_slt_arctic_hts"),
                 ("espeak", "en-gb-x-gbcwmd+m7"), ("espeak", "en-us+f5"),
                 ("espeak", "en-gb-x-rp+klatt3")]
P_FLITE = 0.4  # share of flite among training utterances
MAX_SECONDS = 8.0


def train_voice(rng: random.Random):
    """A random training voice and its prosody settings."""
    if rng.random() < P_FLITE:
        return "flite", rng.choice(FLITE_TRAIN), {
            "stretch": round(rng.uniform(0.8, 1.3), 3),
            "f0": round(rng.uniform(0.8, 1.3), 3)}
    acc, var = rng.choice(ESPEAK_ACCENTS_TRAIN), rng.choice(ESPEAK_VARIANTS_TRAIN)
    return "espeak", acc + ("+" + var if var else ""), {
        "speed": rng.randint(125, 210), "pitch": rng.randint(20, 80),
        "gap": rng.choice([0, 0, 0, 1, 2, 4])}


def synth(engine: str, voice: str, prm: dict, text: str, tmp: str):
    """Run one TTS engine: -> (float64 samples, sample rate)."""
    out = os.path.join(tmp, "x.wav")
    if engine == "espeak":
        cmd = ["espeak-ng", "-v", voice, "-s", str(prm.get("speed", 165)),
               "-p", str(prm.get("pitch", 50)), "-g", str(prm.get("gap", 0)), "-w", out, text]
    elif engine == "flite":
        # Base f0 of the voice is about 100-180 Hz; scale a nominal mean.
        base = 170.0 if voice == "slt" else 105.0
        cmd = ["flite", "-voice", voice, "-t", text, "-o", out,
               "--setf", f"duration_stretch={prm.get('stretch', 1.0)}",
               "--setf", f"int_f0_target_mean={base * prm.get('f0', 1.0):.1f}"]
    elif engine == "festival":
        with open(os.path.join(tmp, "t.txt"), "w") as f:
            f.write(text + "\n")
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-o", out, os.path.join(tmp, "t.txt")]
    else:
        raise ValueError(f"unknown engine {engine!r}")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    x, sr = sf.read(out, dtype="float64", always_2d=True)
    return x[:, 0], sr


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Resample to 16 kHz (polyphase)."""
    if sr == SR:
        return x
    g = np.gcd(sr, SR)
    return signal.resample_poly(x, SR // g, sr // g)


_RIRS = None


def _init(rir_path):
    global _RIRS
    _RIRS = augment.make_rir_bank(rir_path) if rir_path else None


def work_item(job):
    """Synthesise one utterance: job dict -> (job, int16 audio, float16 features) or (job, None, None)."""
    tmp = tempfile.mkdtemp(prefix="demo_tts_")
    try:
        x, sr = synth(job["engine"], job["voice"], job["prm"], job["text"], tmp)
        x = to_16k(x, sr)
        rng = np.random.default_rng(job["seed"])
        if job["augment"]:
            x = augment.augment(x, rng, _RIRS)
        else:  # clean: only a level between -12 and -1 dB full scale
            x = x * (10 ** rng.uniform(-0.6, -0.05) / (np.max(np.abs(x)) + 1e-12))
        q = augment.quantise(x)
        if q.shape[0] < 400 or q.shape[0] > MAX_SECONDS * SR:
            return job, None, None
        feats = common.features(q.astype(np.float32) / np.float32(32768.0))
        if not np.all(np.isfinite(feats)):
            return job, None, None
        return job, q, feats.astype(np.float16)
    except Exception as e:  # a failing engine call drops the utterance, loudly
        print(f"failed {job['id']}: {e}", file=sys.stderr, flush=True)
        return job, None, None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_jobs(sentences, seed):
    """All utterance jobs of every split, deterministic from seed."""
    rng = random.Random(seed)
    jobs = {"train": [], "val": [], "test_seen": [], "test_unseen": []}
    by = {k: [s for sp, s in sentences if sp == k] for k in ("train", "val", "test")}

    def add(split, text, engine, voice, prm, aug):
        jobs[split].append({"id": f"{split}-{len(jobs[split]):06d}", "split": split, "text": text,
                            "engine": engine, "voice": voice, "prm": prm, "augment": aug,
                            "seed": rng.getrandbits(32)})

    return jobs, by, add, rng


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=30000, help="training utterances")
    ap.add_argument("--val-per-sentence", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="parallel worker processes")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--sentences", default=os.path.join(common.HERE, "sentences.tsv"))
    ap.add_argument("--out", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--splits", default="val,test_seen,test_unseen,train")
    ap.add_argument("--test-limit", type=int, default=0, help="at most this many test sentences (0: all)")
    ap.add_argument("--rirs", default="", help="room impulse response bank (.npz, made if missing) for reverb")
    args = ap.parse_args()

    with open(args.sentences) as f:
        sentences = [tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()]
    jobs, by, add, rng = make_jobs(sentences, args.seed)
    train_sents = by["train"]
    for i in range(args.train):
        s = train_sents[i % len(train_sents)] if i < len(train_sents) else rng.choice(train_sents)
        add("train", s, *train_voice(rng), True)
    for s in by["val"]:
        for _ in range(args.val_per_sentence):
            add("val", s, *train_voice(rng), True)
    for i, s in enumerate(by["test"][: args.test_limit or None]):
        add("test_seen", s, *train_voice(rng), False)
        eng, voice = UNSEEN_VOICES[i % len(UNSEEN_VOICES)]
        prm = {"speed": 165, "pitch": 50} if eng == "espeak" else {}
        add("test_unseen", s, eng, voice, prm, False)

    print(f"features from {common.FEATURES_FROM}", flush=True)
    if args.rirs:
        augment.make_rir_bank(args.rirs)
    for split in args.splits.split(","):
        d = os.path.join(args.out, split)
        if os.path.exists(os.path.join(d, "index.json")):
            print(f"{split}: already made, skipped ({d})", flush=True)
            continue
        os.makedirs(d, exist_ok=True)
        t0 = time.time()
        index, a_off, f_off = [], 0, 0
        with open(os.path.join(d, "audio.i16"), "wb") as fa, open(os.path.join(d, "feats.f16"), "wb") as ff, \
                Pool(args.jobs, _init, (args.rirs,)) as pool:
            for k, (job, q, feats) in enumerate(pool.imap(work_item, jobs[split], chunksize=8)):
                if q is None:
                    continue
                fa.write(q.tobytes())
                ff.write(np.ascontiguousarray(feats).tobytes())
                index.append({**job, "n_samples": int(q.shape[0]), "n_frames": int(feats.shape[0]),
                              "audio_offset": a_off, "feat_offset": f_off})
                a_off += q.shape[0]
                f_off += feats.shape[0]
                if (k + 1) % 1000 == 0:
                    el = time.time() - t0
                    print(f"{split}: {k + 1}/{len(jobs[split])} in {el:.0f} s "
                          f"({(k + 1) / el:.1f} utt/s, {a_off / SR / 3600:.2f} h)", flush=True)
        el = time.time() - t0
        meta = {"split": split, "utterances": len(index), "dropped": len(jobs[split]) - len(index),
                "hours": a_off / SR / 3600, "frames": f_off, "seconds_to_make": el,
                "features_from": common.FEATURES_FROM, "utts": index}
        tmp = os.path.join(d, "index.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.replace(tmp, os.path.join(d, "index.json"))  # written last: marks the split complete
        print(f"{split}: {len(index)} utterances, {a_off / SR / 3600:.2f} h, {el:.0f} s "
              f"({len(index) / max(el, 1e-9):.1f} utt/s)", flush=True)


if __name__ == "__main__":
    main()
