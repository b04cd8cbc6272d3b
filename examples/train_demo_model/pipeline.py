"""The demo model's whole training pipeline in one command, resumable after a kill.

Steps (each skipped when its output is complete, so rerunning the same
command resumes; train.py resumes from its last checkpoint):
  1. labels    label.py: Whisper tiny.en labels of the LibriSpeech utterances
               (skipped when labels/librispeech_whisper.tsv exists: it is committed)
  2. synthetic make_data.py: espeak-ng/flite speech, augmented (simulated rooms too)
  3. real      real_data.py: real speech, held-out speakers, augmented copies
  4. init      the first demo model (width 128) as the warm start, from git history (--init: another;
               a narrower one is widened to --width without changing its function)
  5. train     train.py on synthetic + real, model selection on held-out real speakers
  6. test      make_data.py: held-out synthetic voices (test_unseen, clean)
  7. export    export.py -> afmask/data/demo/ (demo.arch, demo_params.af)
  8. evaluate  evaluate.py -> OUT/eval.json

Usage: nice -n 10 python pipeline.py --out work [--hours 1.1] [--threads 1]
"""
import argparse
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# The commit that shipped the first demo model (synthetic speech only), and its weights' md5.
INIT_COMMIT = "30b353022ac5989ead22e94b62c3ed443f62ffb2"
INIT_MD5 = "8fe126bfa7330cabc7dfd65f15c9c6a2"


def run(step: str, args: list, log) -> None:
    """Run one step's script with this Python; stop the pipeline if it fails."""
    t0 = time.time()
    cmd = [sys.executable, os.path.join(HERE, args[0])] + args[1:]
    log(f"{step}: {' '.join(cmd)}")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0:
        raise SystemExit(f"step {step} failed (exit {r.returncode}): {' '.join(cmd)}")
    log(f"{step}: done in {time.time() - t0:.0f} s")


def init_weights(path: str, given: str) -> str:
    """The warm-start weights: --init if given, else the first model's file from git history (md5-checked)."""
    if given:
        return given
    if not os.path.exists(path):
        blob = subprocess.run(["git", "-C", REPO, "show", f"{INIT_COMMIT}:afmask/data/demo/demo_params.af"],
                              check=True, capture_output=True).stdout
        if hashlib.md5(blob).hexdigest() != INIT_MD5:
            raise SystemExit(f"git {INIT_COMMIT}: demo_params.af md5 {hashlib.md5(blob).hexdigest()}, "
                             f"expected {INIT_MD5}")
        with open(path + ".tmp", "wb") as f:
            f.write(blob)
        os.replace(path + ".tmp", path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="work folder (data, checkpoints, logs)")
    ap.add_argument("--real", default=os.path.join(REPO, "..", "shared", "data", "real_speech"))
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--synthetic", type=int, default=3000, help="synthetic training utterances")
    ap.add_argument("--hours", type=float, default=1.1, help="training-time budget of train.py")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes for data making")
    ap.add_argument("--width", type=int, default=128,
                    help="the model's width C (a narrower --init is widened without changing its function)")
    ap.add_argument("--init", default="", help="warm-start weights (default: the first model, from git)")
    ap.add_argument("--export", default=os.path.join(REPO, "afmask", "data", "demo"))
    args = ap.parse_args()
    os.environ["DEMO_WIDTH"] = str(args.width)  # every step's common.WIDTH (its arch file, the model it builds)
    out = os.path.abspath(args.out)
    data = os.path.join(out, "data")
    os.makedirs(data, exist_ok=True)
    t_all = time.time()
    log_f = open(os.path.join(out, "pipeline.log"), "a")

    def log(msg):
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        log_f.write(line + "\n")
        log_f.flush()

    labels = os.path.join(HERE, "labels", "librispeech_whisper.tsv")
    if not os.path.exists(labels):
        run("labels", ["label.py", "--real", args.real, "--out", labels, "--threads", str(args.threads)], log)
    synth = ["make_data.py", "--train", str(args.synthetic), "--val-per-sentence", "1",
             "--test-limit", "210", "--jobs", str(args.jobs), "--rirs", os.path.join(data, "rirs.npz"),
             "--out", data]
    run("synthetic", synth + ["--splits", "val,train"], log)
    run("real", ["real_data.py", "--real", args.real, "--labels", labels, "--out", data,
                 "--jobs", str(args.jobs)], log)
    init = init_weights(os.path.join(out, "init_demo_params.af"), args.init)
    run("train", ["train.py", "--data", data, "--out", out, "--hours", str(args.hours),
                  "--threads", str(args.threads), "--train-splits", "train,real_train",
                  "--val-splits", "real_val", "--init", init, "--lr", "5e-4", "--warmup", "200",
                  "--eval-minutes", "8", "--patience", "6"], log)
    run("synthetic test", synth + ["--splits", "test_unseen"], log)  # held-out voices, after training
    run("export", ["export.py", "--ckpt", os.path.join(out, "ckpt_best.pt"), "--out", args.export], log)
    run("evaluate", ["evaluate.py", "--model", args.export, "--data", data, "--shared", args.shared,
                     "--splits", "real_val,test_unseen,val,real_train", "--json", os.path.join(out, "eval.json"),
                     "--torch-check", os.path.join(out, "ckpt_best.pt")], log)
    log(f"pipeline finished in {(time.time() - t_all) / 60:.1f} min (this invocation)")


if __name__ == "__main__":
    main()
