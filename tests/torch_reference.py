"""An independent PyTorch implementation of the wav2letter layers, in ArrayFire dim order (tests only)."""

import numpy as np
import torch

from afmask.fl import nn

tF = torch.nn.functional


def same_pad(n, k, s, p):
    """flashlight's padding rule (DESIGN.md), written out again independently."""
    if p != -1:
        return p
    r = s if n % s == 0 else n % s
    return max(((k - 1) - r + 1 + 1) // 2, 0)


def af_moddims(x, dims):
    """Column-major reshape of a 4-D tensor in ArrayFire dim order."""
    dims = list(dims)
    for i, d in enumerate(dims):
        if d == 0:
            dims[i] = x.shape[i]
    if -1 in dims:
        i = dims.index(-1)
        dims[i] = x.numel() // int(np.prod([d for d in dims if d != -1]))
    return x.permute(3, 2, 1, 0).reshape(dims[::-1]).permute(3, 2, 1, 0)


def t_conv(x, w, b, sx, sy, px, py):
    """[W, H, C, N] cross-correlation with weights [kw, kh, cin, cout] and bias [1, 1, cout, 1]."""
    kw, kh = w.shape[0], w.shape[1]
    px, py = same_pad(x.shape[0], kw, sx, px), same_pad(x.shape[1], kh, sy, py)
    y = tF.conv2d(x.permute(3, 2, 0, 1), w.permute(3, 2, 0, 1), None if b is None else b.reshape(-1),
                  stride=(sx, sy), padding=(px, py))
    return y.permute(2, 3, 1, 0)


def t_linear(x, w, b):
    y = torch.einsum("oi,itnm->otnm", w[:, :, 0, 0], x)
    return y if b is None else y + b.reshape(-1, 1, 1, 1)


def t_pool(x, m):
    px, py = same_pad(x.shape[0], m.wx, m.sx, m.px), same_pad(x.shape[1], m.wy, m.sy, m.py)
    y = x.permute(3, 2, 0, 1)
    if m.mode == nn.MAX:
        y = tF.max_pool2d(tF.pad(y, (py, py, px, px), value=-float("inf")), (m.wx, m.wy), (m.sx, m.sy))
    else:
        y = tF.avg_pool2d(tF.pad(y, (py, py, px, px)), (m.wx, m.wy), (m.sx, m.sy))
    return y.permute(2, 3, 1, 0)


def torch_forward(net, x):
    """Run afmask network ``net``'s layers with torch ops on a 4-D tensor in ArrayFire dim order."""
    P = lambda v: torch.from_numpy(np.ascontiguousarray(v.host().reshape(v.dims())))  # noqa: E731
    for m in net.modules():
        if isinstance(m, nn.WeightNorm):
            v, g = (P(p) for p in m.params()[:2])
            other = [d for d in range(4) if d != m.dim]
            inner = m.module()
            w = v * g / torch.sqrt((v * v).sum(dim=other, keepdim=True))
            b = P(m.params()[2]) if len(m.params()) > 2 else None
        else:
            inner = m
            w = P(m.params()[0]) if m.params() else None
            b = P(m.params()[1]) if len(m.params()) > 1 else None
        if isinstance(inner, nn.Conv2D):
            x = t_conv(x, w, b, inner.sx, inner.sy, inner.px, inner.py)
        elif isinstance(inner, nn.Linear):
            x = t_linear(x, w, b)
        elif isinstance(m, nn.View):
            x = af_moddims(x, m.dims)
        elif isinstance(m, nn.Reorder):
            x = x.permute(*m.perm)
        elif isinstance(m, nn.ReLU):
            x = torch.relu(x)
        elif isinstance(m, nn.HardTanh):
            x = tF.hardtanh(x)
        elif isinstance(m, nn.Tanh):
            x = torch.tanh(x)
        elif isinstance(m, nn.Swish):
            x = x * torch.sigmoid(m.beta * x)
        elif isinstance(m, nn.GatedLinearUnit):
            x = tF.glu(x, m.dim)
        elif isinstance(m, nn.Dropout):
            pass  # evaluation
        elif isinstance(m, nn.Padding):
            pads = [p for lo_hi in reversed(m.pads) for p in lo_hi]
            x = tF.pad(x, pads, value=m.val)
        elif isinstance(m, nn.Pool2D):
            x = t_pool(x, m)
        elif isinstance(m, nn.LayerNorm):
            mu = x.mean(dim=m.axes, keepdim=True)
            var = x.var(dim=m.axes, unbiased=False, keepdim=True)
            w, b = (P(p).reshape(()) for p in m.params())
            x = w * (x - mu) / torch.sqrt(var + m.eps) + b
        elif isinstance(m, nn.LogSoftmax):
            x = tF.log_softmax(x, m.dim)
        else:
            raise NotImplementedError(m.prettyString())
    return x
