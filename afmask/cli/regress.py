"""``afmask regress DUMP --arch A --params P``: replay one C++ iteration and compare every tensor."""

from __future__ import annotations

import argparse
import os

from afmask.mask.regress import RTOL


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``regress`` sub-command."""
    p = sub.add_parser(
        "regress",
        help="replay one iteration of the C++ loop from an af::saveArray dump and compare tensors",
        description="Recompute one iteration of the original loop from a dump's fft, m, eps, lambda, lr (and variant), "
                    "and compare input, output, pre_output, dy, mgrad, m_next, loss, f_loss where present. "
                    "Exit status 1 if any tensor is out of tolerance.",
    )
    p.add_argument("dump", metavar="DUMP", help="af::saveArray file written by csrc/afmask_dump.h")
    p.add_argument("--arch", required=True, metavar="A", help="wav2letter .arch file of the network")
    p.add_argument("--params", required=True, metavar="P", help="its weights (.af in params() order, or .npz)")
    p.add_argument("--rtol", type=float, default=RTOL,
                   help=f"tolerance: max|afmask - dump| <= rtol * max|dump| per tensor (default {RTOL:g})")
    p.add_argument("--stats", choices=["arrayfire_cpu", "float64"], default="arrayfire_cpu",
                   help="input mean/stdev as ArrayFire's CPU float32 sums (default) or in float64")
    p.add_argument("--norm", choices=["float32", "float64"], default="float32",
                   help="||m|| as af::norm's sequential float32 sum (default) or in float64")
    p.add_argument("--chain", action="store_true",
                   help="replay the whole chain from fft, m and eps alone (default: each stage from the dump's own inputs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the per-tensor table; 0 if all pass, 1 otherwise."""
    from afmask.api import regress
    from afmask.mask.regress import check_rtol
    from afmask.model import load_model

    check_rtol(args.rtol, "--rtol")  # before the slow part
    for flag, path in (("DUMP", args.dump), ("--arch", args.arch), ("--params", args.params)):
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path}: is a folder, not a file ({flag})")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file ({flag})")
    model = load_model(args.arch, args.params)
    ok, _, table = regress(args.dump, model, rtol=args.rtol, stats=args.stats, norm_accumulation=args.norm,
                           stagewise=not args.chain)
    print(table)
    return 0 if ok else 1
