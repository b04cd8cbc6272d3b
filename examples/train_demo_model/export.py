"""Export a trained checkpoint as afmask's demo model (arch file + ArrayFire params file).

Writes afmask/data/demo/demo.arch (wav2letter layer syntax with the NFEAT and
NLABEL placeholders, as the original network.arch) and
afmask/data/demo/demo_params.af: every tensor of flashlight's
`network->params()` in order (per layer of the arch file: Conv2D weight
[kw, kh, cin, cout] then bias [1, 1, cout, 1]; Linear weight [out, in] then
bias [out]) saved with afmask.io.save_array under keys param_000, param_001...

Usage: python export.py [--ckpt work/ckpt_best.pt] [--out afmask/data/demo]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from afmask.io import read_arrays, save_array  # noqa: E402


def flashlight_params(state: dict) -> list:
    """torch state dict -> list of NumPy arrays in flashlight params() order and ArrayFire orientation."""
    def conv(prefix):
        w = state[prefix + ".weight"].numpy()  # torch (cout, cin, kw)
        b = state[prefix + ".bias"].numpy()
        wf = np.ascontiguousarray(np.transpose(w, (2, 1, 0))[:, None, :, :])  # (kw, kh=1, cin, cout)
        return [wf.astype(np.float32), b.reshape(1, 1, -1).astype(np.float32)]  # bias 1 x 1 x cout

    params = conv("conv0")
    for i in range(common.N_CONV_STRIDE1):
        params += conv(f"convs.{i}")
    for name in ("lin1", "lin2"):
        params += [state[name + ".weight"].numpy().astype(np.float32),  # [out, in]
                   state[name + ".bias"].numpy().astype(np.float32)]
    return params


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=os.path.join(common.WORK, "ckpt_best.pt"))
    ap.add_argument("--out", default=os.path.join(common.REPO, "afmask", "data", "demo"))
    args = ap.parse_args()
    ck = torch.load(args.ckpt, weights_only=False, map_location="cpu")
    if ck["width"] != common.WIDTH:
        raise SystemExit(f"{args.ckpt} has width {ck['width']}, common.WIDTH is {common.WIDTH}: set DEMO_WIDTH")
    params = flashlight_params(ck["model"])
    os.makedirs(args.out, exist_ok=True)

    arch = os.path.join(args.out, "demo.arch")
    with open(arch + ".tmp", "w") as f:
        f.write(common.ARCH)
    os.replace(arch + ".tmp", arch)

    af = os.path.join(args.out, "demo_params.af")
    tmp = af + ".tmp"
    if os.path.exists(tmp):
        os.remove(tmp)
    for i, p in enumerate(params):
        save_array(f"param_{i:03d}", p, tmp, append=i > 0)
    back = read_arrays(tmp)  # check the file round-trips before it replaces the old one
    assert list(back) == [f"param_{i:03d}" for i in range(len(params))], list(back)
    for i, p in enumerate(params):
        q = back[f"param_{i:03d}"]
        assert q.shape == p.shape and np.array_equal(q, p), (i, q.shape, p.shape)
    os.replace(tmp, af)
    n = sum(p.size for p in params)
    print(f"wrote {arch} and {af}: {len(params)} arrays, {n} parameters, {os.path.getsize(af)} bytes "
          f"(from {args.ckpt}, epoch {ck['state']['epoch']}, best val CER {ck['state']['best_cer']:.4f})")
    for i, p in enumerate(params):
        print(f"  param_{i:03d} {p.shape}")


if __name__ == "__main__":
    main()
