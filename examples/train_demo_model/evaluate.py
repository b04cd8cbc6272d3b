"""Evaluate the exported demo model with a NumPy forward pass that reads only the exported files.

The forward pass here parses afmask/data/demo/demo.arch and reads
demo_params.af, implementing flashlight's semantics independently of torch
(View, Conv2D cross-correlation with SAME padding, ReLU, Reorder, Linear), so
it checks the export as afmask will load it. Reports greedy-decoding CER on
the held-out synthetic splits (per voice for unseen voices) and on the real
recordings in shared/data (LibriVox, LibriSpeech); for real_train, on the clean
copy of each training utterance, which says whether the model under- or
over-fits (held-out CER far above it: more data helps; close to it: more
training or width helps). Optionally (--torch-check)
compares against the torch model of the checkpoint.

Usage: python evaluate.py [--shared ../shared] [--json work/eval.json]
"""
import argparse
import glob
import json
import os
import sys
from collections import defaultdict

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # a shared machine: one core for BLAS
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from afmask.io import load_audio, read_arrays  # noqa: E402


def same_pad(n, k, s):
    r = s if n % s == 0 else n % s
    return ((k - 1) - r + 1 + 1) // 2


class NumpyW2L:
    """Minimal flashlight-semantics forward of an arch file with V/C2/R/RO/L layers (float32)."""

    def __init__(self, arch_path: str, params_path: str, nfeat=257, nlabel=31):
        params = read_arrays(params_path)
        arrays = [params[k] for k in sorted(params)]
        self.layers = []
        for line in open(arch_path):
            tok = line.replace("NFEAT", str(nfeat)).replace("NLABEL", str(nlabel)).split()
            if not tok or tok[0].startswith("#"):
                continue
            if tok[0] == "C2":
                cin, cout, kw, kh, sx, sy, px, py = map(int, tok[1:9])
                w, b = arrays.pop(0), arrays.pop(0)
                assert w.shape == (kw, kh, cin, cout) and b.shape == (1, 1, cout), (w.shape, b.shape)
                assert kh == 1 and sy == 1 and px == -1
                self.layers.append(("C2", w[:, 0], b.reshape(-1), sx))
            elif tok[0] == "L":
                w, b = arrays.pop(0), arrays.pop(0)
                assert w.shape == (int(tok[2]), int(tok[1])) and b.shape == (int(tok[2]),)
                self.layers.append(("L", w, b))
            elif tok[0] in ("V", "R", "RO"):
                self.layers.append((tok[0],))
            else:
                raise ValueError(f"{arch_path}: layer {tok[0]} not handled by this checker")
        assert not arrays, f"{len(arrays)} params left over"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Network input (T, K) -> emissions (31, T'). Rows of h are time (W), columns channels."""
        h = x.astype(np.float32)
        for layer in self.layers:
            if layer[0] == "C2":
                _, w, b, s = layer
                n, k = h.shape[0], w.shape[0]
                p = same_pad(n, k, s)
                hp = np.concatenate([np.zeros((p, h.shape[1]), np.float32), h, np.zeros((p, h.shape[1]), np.float32)])
                t_out = (n + 2 * p - k) // s + 1
                out = np.zeros((t_out, w.shape[2]), np.float32) + b
                for j in range(k):
                    out += hp[j: j + s * (t_out - 1) + 1: s] @ w[j]
                h = out
            elif layer[0] == "R":
                h = np.maximum(h, 0)
            elif layer[0] == "L":
                h = h @ layer[1].T + layer[2]
            # V and RO only relabel dims here: h stays (time, channels)
        return h.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(common.REPO, "afmask", "data", "demo"))
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--shared", default=os.environ.get("AFMASK_SHARED", os.path.join(common.REPO, "..", "shared")))
    ap.add_argument("--json", default=os.path.join(common.WORK, "eval.json"))
    ap.add_argument("--splits", default="test_unseen,test_seen,val", help="cached splits, comma-separated ('' for none); real_train is scored on its clean copies only")
    ap.add_argument("--torch-check", default=None, help="checkpoint to compare the NumPy forward against")
    args = ap.parse_args()
    net = NumpyW2L(os.path.join(args.model, "demo.arch"), os.path.join(args.model, "demo_params.af"))
    res = {}

    if args.torch_check:
        import torch
        from train import Split
        ck = torch.load(args.torch_check, weights_only=False)
        m = common.build_model()
        m.load_state_dict(ck["model"])
        m.eval()
        sp = Split(args.data, [s for s in args.splits.split(",") if s][0])
        f = sp.feat(0)
        with torch.no_grad():
            y, n = m(*common.batch_inputs([f]))
        e = net(f)
        diff = float(np.abs(e - y[0].numpy()).max())
        res["torch_vs_numpy_max_abs_diff"] = diff
        print(f"torch vs numpy forward: shapes {tuple(y[0].shape)} {e.shape}, max |diff| {diff:.2e}")

    try:  # afmask's own loader and forward pass, on the same files
        from afmask.model import forward as af_forward, load_model
    except ImportError:
        load_model = None
    if load_model is not None:
        afnet = load_model(os.path.join(args.model, "demo.arch"), os.path.join(args.model, "demo_params.af"))
        probe = common.features(load_audio(os.path.join(args.shared, "data", "librivox",
                                                        "sense_and_sensibility_01_austen_64kb-0890.wav")))
        a, b = af_forward(afnet, probe), net(probe)
        diff = float(np.abs(a - b).max())
        res["afmask_vs_numpy_max_abs_diff"] = diff
        print(f"afmask.model forward vs this NumPy forward: shapes {a.shape} {b.shape}, max |diff| {diff:.2e}")

    for split in [s for s in args.splits.split(",") if s]:
        d = os.path.join(args.data, split)
        if not os.path.exists(os.path.join(d, "index.json")):
            continue
        meta = json.load(open(os.path.join(d, "index.json")))
        feats = np.memmap(os.path.join(d, "feats.f16"), dtype=np.float16, mode="r", shape=(meta["frames"], 257))
        utts = meta["utts"]
        if split == "real_train":  # only the clean copy of each training utterance: how well the model fits them
            utts = [u for u in utts if u.get("copy") == 0]
        errs, chars = defaultdict(float), defaultdict(int)
        for u in utts:
            f = np.asarray(feats[u["feat_offset"]: u["feat_offset"] + u["n_frames"]], np.float32)
            hyp = common.greedy_decode(net(f))
            key = f"{u['engine']}:{u['voice']}" if split == "test_unseen" else u["engine"]
            for k in (key, "all"):
                errs[k] += common.cer(hyp, u["text"]) * len(u["text"])
                chars[k] += len(u["text"])
        res[split] = {k: {"cer": errs[k] / chars[k], "chars": chars[k]} for k in sorted(errs)}
        print(f"{split}: CER {res[split]['all']['cer']:.4f} over {len(utts)} utterances", flush=True)
        for k in sorted(errs):
            if k != "all":
                print(f"    {k:40s} {errs[k] / chars[k]:.4f}")

    real = sorted(glob.glob(os.path.join(args.shared, "data", "librivox", "*.wav")))
    real.append(os.path.join(args.shared, "data", "librispeech", "utt-000000000.flac"))
    real.append(os.path.join(common.REPO, "afmask", "data", "audio", "demo.wav"))  # the bundled utterance
    res["real"] = {}
    for path in real:
        txt = os.path.splitext(path)[0] + ".txt"
        if not (os.path.exists(path) and os.path.exists(txt)):
            print(f"skip {path}: missing audio or transcript")
            continue
        ref = common.normalise_transcript(open(txt).read())
        em = net(common.features(load_audio(path)))
        hyp = common.greedy_decode(em)
        c = common.cer(hyp, ref)
        res["real"][os.path.basename(path)] = {"cer": c, "ref": ref, "hyp": hyp, "frames_out": em.shape[1]}
        print(f"{os.path.basename(path)}: CER {c:.4f} (T' = {em.shape[1]})\n    ref: {ref}\n    hyp: {hyp}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
