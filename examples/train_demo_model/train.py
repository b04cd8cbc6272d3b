"""Train the demo recogniser (CTC) on the cached features of make_data.py.

Batches are bucketed by length (about --batch-frames input frames each),
SpecAugment-style time/frequency masks are applied on the fly, Adam with a
warm-up and a cosine decay over a wall-clock budget (--hours of training
time, counted across resumes), a validation CER after every epoch, and a
checkpoint every few minutes and at every epoch end: a killed run resumes
where it stopped when started again with the same command.

Usage: nice -n 10 python train.py [--hours 1.6] [--threads 1]
Writes work/train.log, work/ckpt_last.pt, work/ckpt_best.pt (best val CER).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class Split:
    """One split of the cache: index and a float16 memmap of the features."""

    def __init__(self, root: str, name: str):
        d = os.path.join(root, name)
        with open(os.path.join(d, "index.json")) as f:
            self.meta = json.load(f)
        self.utts = self.meta["utts"]
        self.feats = np.memmap(os.path.join(d, "feats.f16"), dtype=np.float16, mode="r",
                               shape=(self.meta["frames"], common.NFEAT))
        self.targets = [common.encode(u["text"]) for u in self.utts]

    def feat(self, i: int) -> np.ndarray:
        """Network input (T, 257) float32 of utterance i."""
        u = self.utts[i]
        return np.asarray(self.feats[u["feat_offset"]: u["feat_offset"] + u["n_frames"]], dtype=np.float32)


class Concat:
    """Several splits seen as one (same interface as Split: utts, targets, feat)."""

    def __init__(self, splits):
        self.parts = splits
        self.utts, self.targets, self.where = [], [], []
        for k, sp in enumerate(splits):
            self.utts += sp.utts
            self.targets += sp.targets
            self.where += [(k, i) for i in range(len(sp.utts))]
        self.meta = {"hours": sum(sp.meta["hours"] for sp in splits),
                     "features_from": splits[0].meta["features_from"]}

    def feat(self, i: int) -> np.ndarray:
        """Network input (T, 257) float32 of utterance i."""
        k, j = self.where[i]
        return self.parts[k].feat(j)


def spec_augment(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two frequency and two time masks, set to 0 (the normalised mean)."""
    f = f.copy()
    t = f.shape[0]
    for _ in range(2):
        w = int(rng.integers(0, 25))
        s = int(rng.integers(0, common.NFEAT - w))
        f[:, s: s + w] = 0
    for _ in range(2):
        w = int(rng.integers(0, min(20, t // 8) + 1))
        s = int(rng.integers(0, max(1, t - w)))
        f[s: s + w] = 0
    return f


def make_batches(split: Split, batch_frames: int, seed: int):
    """Length-bucketed batches (lists of indices), shuffled, from a seed."""
    rng = random.Random(seed)
    order = sorted(range(len(split.utts)), key=lambda i: split.utts[i]["n_frames"] + rng.uniform(0, 30))
    batches, cur, longest = [], [], 0
    for i in order:
        n = split.utts[i]["n_frames"]
        if cur and max(longest, n) * (len(cur) + 1) > batch_frames:
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def run_batch(model, split, idx, rng=None):
    """Forward one batch: -> (log-probs (T', B, 31), output lengths, targets, target lengths)."""
    feats = [split.feat(i) for i in idx]
    if rng is not None:
        feats = [spec_augment(f, rng) for f in feats]
    x, lengths = common.batch_inputs(feats)
    logits, n = model(x, lengths)
    logp = F.log_softmax(logits, dim=1).permute(2, 0, 1)
    tg = [split.targets[i] for i in idx]
    return logp, n, torch.tensor([t for s in tg for t in s]), torch.tensor([len(s) for s in tg])


@torch.no_grad()
def evaluate(model, split, batch_frames=20000):
    """Greedy CER (corpus: total edits / total reference chars) and mean CTC loss of a split."""
    model.eval()
    errs, chars, losses = 0.0, 0, []
    for b in make_batches(split, batch_frames, 0):
        logp, n, tg, tl = run_batch(model, split, b)
        losses.append(float(F.ctc_loss(logp, tg, n, tl, blank=common.BLANK, zero_infinity=True)))
        for k, i in enumerate(b):
            hyp = common.greedy_decode(logp[: n[k], k].T.numpy())
            ref = split.utts[i]["text"]
            errs += common.cer(hyp, ref) * len(ref)
            chars += len(ref)
    model.train()
    return errs / max(chars, 1), float(np.mean(losses))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--out", default=common.WORK)
    ap.add_argument("--hours", type=float, default=1.6, help="training wall-clock budget")
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--patience", type=int, default=5, help="epochs without val improvement before stopping")
    ap.add_argument("--batch-frames", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300, help="warm-up steps")
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-splits", default="train", help="training splits, comma-separated")
    ap.add_argument("--val-splits", default="val",
                    help="validation splits, comma-separated; the first one selects the best model")
    ap.add_argument("--init", default="", help="warm start from an exported demo_params.af (the same width or narrower)")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--eval-minutes", type=float, default=0.0,
                    help="also validate (and keep the best) every this many training minutes (0: per epoch)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log_f = open(os.path.join(args.out, "train.log"), "a")

    def log(msg):
        line = time.strftime("%H:%M:%S ") + msg
        print(line, flush=True)
        log_f.write(line + "\n")
        log_f.flush()

    train = Concat([Split(args.data, s) for s in args.train_splits.split(",")])
    vals = {s: Split(args.data, s) for s in args.val_splits.split(",")}
    val = vals[args.val_splits.split(",")[0]]
    model = common.build_model()
    if args.init and common.params_width(args.init) != common.WIDTH:
        common.widen_from(model, args.init)  # a warm start from a narrower model, the same function
    elif args.init:
        common.load_flashlight_params(model, args.init)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    state = {"epoch": 0, "batch": 0, "step": 0, "elapsed": 0.0, "best_cer": 1e9, "bad_epochs": 0, "history": []}
    last = os.path.join(args.out, "ckpt_last.pt")
    if os.path.exists(last):
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        args.init = ""  # the checkpoint holds the weights
        log(f"resumed from {last}: epoch {state['epoch']} batch {state['batch']} "
            f"step {state['step']} elapsed {state['elapsed']:.0f} s")
    else:
        log(f"start: {len(train.utts)} train utts ({train.meta['hours']:.2f} h), {len(val.utts)} val; "
            f"warm start {args.init or 'none (He initialisation)'}; width {common.WIDTH}, {sum(p.numel() for p in model.parameters())} params; "
            f"features {train.meta['features_from']}; tokens {common.TOKENS_FROM}; args {vars(args)}")

    def save(path, extra=None):
        tmp = path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                    "width": common.WIDTH, **(extra or {})}, tmp)
        os.replace(tmp, path)

    budget = args.hours * 3600
    if state.get("finished"):
        log(f"already finished: best val CER {state['best_cer']:.4f} ({last}); delete it to train again")
        return
    model.train()
    last_ckpt = time.time()
    done = False
    while state["epoch"] < args.max_epochs and not done:
        batches = make_batches(train, args.batch_frames, args.seed * 1000 + state["epoch"])
        rng = np.random.default_rng(args.seed * 1000 + state["epoch"] + state["batch"])
        t_ep, loss_sum, loss_n = time.time(), 0.0, 0
        while state["batch"] < len(batches):
            t0 = time.time()
            progress = min(1.0, state["elapsed"] / budget)
            lr = args.lr * min(1.0, (state["step"] + 1) / args.warmup) * max(0.02, 0.5 * (1 + math.cos(math.pi * progress)))
            for g in opt.param_groups:
                g["lr"] = lr
            logp, n, tg, tl = run_batch(model, train, batches[state["batch"]], rng)
            loss = F.ctc_loss(logp, tg, n, tl, blank=common.BLANK, zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            if torch.isfinite(gn):
                opt.step()
            loss_sum += float(loss.detach())
            loss_n += 1
            state["batch"] += 1
            state["step"] += 1
            state["elapsed"] += time.time() - t0
            if state["step"] % 100 == 0:
                log(f"epoch {state['epoch']} batch {state['batch']}/{len(batches)} step {state['step']} "
                    f"loss {loss_sum / loss_n:.3f} lr {lr:.2e} gnorm {float(gn):.2f} "
                    f"train time {state['elapsed'] / 60:.1f} min")
                loss_sum, loss_n = 0.0, 0
            if time.time() - last_ckpt > args.ckpt_minutes * 60:
                save(last)
                last_ckpt = time.time()
            if state["elapsed"] >= budget:
                done = True
                break
            if args.eval_minutes and state["elapsed"] - state.get("last_eval", 0.0) >= args.eval_minutes * 60:
                break  # a validation within the epoch; the epoch continues after it
        t1 = time.time()
        vcer, vloss = evaluate(model, val)
        others = {s: evaluate(model, sp)[0] for s, sp in vals.items() if sp is not val}
        state["elapsed"] += time.time() - t1
        state["last_eval"] = state["elapsed"]
        ep_done = state["batch"] >= len(batches)
        state["history"].append({"epoch": state["epoch"], "complete": ep_done, "val_cer": vcer, "val_loss": vloss,
                                 "other_val_cer": others, "train_minutes": state["elapsed"] / 60})
        improved = vcer < state["best_cer"]
        if improved:
            state["best_cer"], state["bad_epochs"] = vcer, 0
        else:
            state["bad_epochs"] += 1
        log(f"epoch {state['epoch']} {'done' if ep_done else 'stopped'} in {time.time() - t_ep:.0f} s: "
            f"val CER {vcer:.4f} loss {vloss:.3f} (best {state['best_cer']:.4f}) "
            + "".join(f"{s} CER {c:.4f} " for s, c in others.items()) +
            f"train time {state['elapsed'] / 60:.1f} min")
        if ep_done:
            state["epoch"] += 1
            state["batch"] = 0
        if improved:
            save(os.path.join(args.out, "ckpt_best.pt"))
        save(last)
        last_ckpt = time.time()
        if state["bad_epochs"] >= args.patience and not done:
            log(f"no val improvement in {args.patience} epochs: stop")
            break
    state["finished"] = True
    save(last)
    log(f"finished: best val CER {state['best_cer']:.4f}, {state['step']} steps, "
        f"train time {state['elapsed'] / 60:.1f} min")


if __name__ == "__main__":
    main()
