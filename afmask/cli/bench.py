"""``afmask bench kernel|mask|backends|gpu|torch``: benchmarks that print figures (ratios against a baseline in the same run)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command and its two benchmarks."""
    from afmask.bench import backends, gpu, kernel, mask

    p = sub.add_parser("bench", help="benchmarks: the fused kernel, or the whole experiment")
    which = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    which.required = True
    k = which.add_parser("kernel", help="the fused mask step against the original per-bin loop and a plain copy")
    kernel.add_arguments(k)
    k.set_defaults(func=kernel.run_from_args)
    m = which.add_parser("mask", help="seconds per iteration and convergence on the demo model")
    mask.add_arguments(m)
    m.set_defaults(func=mask.run_from_args)
    b = which.add_parser("backends", help="one default iteration on numpy, arrayfire and cupy, interleaved")
    backends.add_arguments(b)
    b.set_defaults(func=backends.run_from_args)
    g = which.add_parser("gpu", help="the original architecture on a GPU: iteration vs PyTorch, convergence, agreement")
    gpu.add_arguments(g)
    g.set_defaults(func=gpu.run_from_args)
    from afmask.corpus import bench as corpus_bench

    c = which.add_parser("corpus", help="utterances per minute of explain-corpus on 1 and 2 Dask workers")
    corpus_bench.add_arguments(c)
    c.set_defaults(func=corpus_bench.run_from_args)
    from afmask.bench import torch as torch_bench  # imports torch only when run

    t = which.add_parser("torch", help="afmask against PyTorch on the same network and iteration (needs torch)")
    torch_bench.add_arguments(t)
    t.set_defaults(func=torch_bench.run_from_args)
