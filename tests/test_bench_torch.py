"""``afmask bench torch`` runs end to end (tiny sizes) and its PyTorch iteration computes the same f as afmask."""

import pytest


def test_bench_torch_smoke(capsys):
    pytest.importorskip("torch", reason="PyTorch is not installed: afmask bench torch compares with it")
    from afmask.bench.torch import Settings, run

    st = Settings(lengths=(40, 56, 72), rounds=1, long_rounds=1, compile=False, busy_seconds=5.0, memory=True,
                  original_width=8)
    lines = []
    out = run(st, lines.append)
    text = "\n".join(lines)
    for what in ("threads:", "demo model fwd+bwd, T = 40", "original architecture (width 8)", "default iteration",
                 "iteration / (S x fwd+bwd)", "per-frame cost", "peak RSS", "busy core"):
        assert what in text, f"{what!r} missing from:\n{text}"
    for T, diff in out["extra"]["agreement"].items():
        assert diff < 1e-4, f"f of afmask and the PyTorch iteration differ by {diff:.2e} at T = {T}"
    assert 0 < out["peak_rss_mb"] < 4096


def test_bench_torch_without_torch_says_so(monkeypatch, capsys):
    import argparse

    from afmask.bench import torch as bench

    def missing():
        raise bench.TorchMissing("PyTorch is not installed (test)")

    monkeypatch.setattr(bench, "_torch", missing)
    assert bench.run_from_args(argparse.Namespace(quick=True, rounds=None, compile=False)) == 0
    assert "skipped: PyTorch is not installed" in capsys.readouterr().out


def test_each_timed_call_follows_an_untimed_call_of_its_own_side():
    """The other side's idle threads spin for a while after its work: the first call after it is not timed."""
    from afmask.bench.torch import Row, interleave

    calls = []
    row = interleave(Row("r"), lambda: calls.append("a"), {"x": lambda: calls.append("x"),
                                                           "y": lambda: calls.append("y")}, rounds=2)
    assert calls == ["a", "a", "x", "x", "y", "y"] * 2
    assert len(row.afmask_ms) == 2 and [len(v) for v in row.torch_ms.values()] == [2, 2]
