"""Development cross-check: afmask's network against an independent PyTorch implementation of the same layers.

Both run float32 on the same random weights; the forward output and the
gradient with respect to the input must agree within 1e-4 of the largest
magnitude (float32 sums over up to 8 * 257 terms, eight layers deep, in a
different order). PyTorch is only a development dependency.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (development-only cross-check of the model layers)")

from afmask.model import build_network, forward_backward, original_arch, parse_arch_text  # noqa: E402
from torch_reference import torch_forward  # noqa: E402

TOL = 1e-4


def compare(net, x_np, seed=0):
    """Max |difference| / max |reference| of the output and of the input gradient (T x K input)."""
    xt = torch.from_numpy(x_np.reshape(x_np.shape + (1, 1))).requires_grad_(True)
    yt = torch_forward(net, xt)
    go = np.random.default_rng(seed).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(go))
    out, gx = forward_backward(net, x_np, go.reshape(_canonical(go.shape)))
    y_ref, g_ref = yt.detach().numpy().reshape(out.shape), xt.grad.numpy().reshape(gx.shape)
    return np.abs(out - y_ref).max() / np.abs(y_ref).max(), np.abs(gx - g_ref).max() / np.abs(g_ref).max()


def _canonical(shape):
    shape = list(shape)
    while len(shape) > 1 and shape[-1] == 1:
        shape.pop()
    return tuple(shape)


@pytest.mark.parametrize("t", [200, 201])
def test_original_architecture_matches_torch(t):
    net = build_network(parse_arch_text(original_arch(256), 257, 31), np.random.default_rng(t))
    net.eval()
    x = np.random.default_rng(100 + t).standard_normal((t, 257)).astype(np.float32)
    out_err, grad_err = compare(net, x)
    print(f"T={t}: output rel err {out_err:.2e}, input-gradient rel err {grad_err:.2e}")
    assert out_err < TOL and grad_err < TOL


def test_other_layers_match_torch():
    arch = """V -1 1 NFEAT 0
PD 0.25 2 1
WN 3 C2 NFEAT 16 5 1 2 1 -1 -1
GLU 2
M 3 1 2 1 -1 0
C 8 12 3 1 1
HT
A 2 1 1 1 1 0
LN 0 1 2
SH 1.5
DO 0.3
RO 2 0 3 1
WN 0 L 12 10
T
L 10 NLABEL 0
LSM 0
"""
    net = build_network(parse_arch_text(arch, 40, 31), np.random.default_rng(7))
    net.eval()
    for t in (37, 38):
        x = np.random.default_rng(t).standard_normal((t, 40)).astype(np.float32)
        out_err, grad_err = compare(net, x)
        print(f"other layers, T={t}: output rel err {out_err:.2e}, input-gradient rel err {grad_err:.2e}")
        assert out_err < TOL and grad_err < TOL, (t, out_err, grad_err)
