"""The .arch parser and the layers it builds: syntax, errors, parameter dims, shapes, gradients."""

import numpy as np
import pytest

from afmask.fl import Variable, gradcheck, nn
from afmask.model import (
    ArchError,
    build_network,
    expected_features,
    forward,
    load_model,
    original_arch,
    output_frames,
    parse_arch_text,
    read_arch,
)


def _write(tmp_path, text, name="net.arch"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ------------------------------------------------------------------ syntax


def test_comments_blank_lines_and_substitution():
    specs = parse_arch_text("# a comment\n\n   \nV -1 1 NFEAT 0\n  # indented comment\nL NFEAT NLABEL  # trailing\n", 40, 7)
    assert [s.code for s in specs] == ["V", "L"]
    assert specs[0].args == (-1, 1, 40, 0)
    assert specs[1].args == (40, 7, True)
    assert [s.lineno for s in specs] == [4, 6]


def test_every_code_builds_its_module():
    text = """V -1 1 NFEAT 0
RO 2 0 3 1
PD 0 1 2
PD -1.5 1 2 0 0 3 0 0 1
C 4 6 3 1
C1 4 6 3 2 -1 1 0
C2 4 6 3 1 1 1 -1 -1 1 1
L 4 6
L 4 6 0
LN 0 1 2
WN 3 C2 4 6 3 1 1 1
WN 0 L 4 6
DO 0.2
M 2 1 2 1
A 2 1 2 1 -1 0
R
HT
T
SH
SH 2.5
GLU 0
LSM 0
ELU
LG
"""
    specs = parse_arch_text(text, 5, 3)
    net = build_network(specs, np.random.default_rng(0))
    kinds = [type(m).__name__ for m in net.modules()]
    assert kinds == [
        "View", "Reorder", "Padding", "Padding", "Conv2D", "Conv2D", "Conv2D", "Linear", "Linear", "LayerNorm",
        "WeightNorm", "WeightNorm", "Dropout", "Pool2D", "Pool2D", "ReLU", "HardTanh", "Tanh", "Swish", "Swish",
        "GatedLinearUnit", "LogSoftmax", "ELU", "Log",
    ]
    m = net.modules()
    assert m[2].pads == [(1, 2), (0, 0), (0, 0), (0, 0)] and m[2].val == 0
    assert m[3].pads == [(1, 2), (0, 0), (3, 0), (0, 1)] and m[3].val == -1.5
    # C: kh 1, py 0; bias flag 0 drops the bias
    assert [p.dims() for p in m[4].params()] == [(3, 1, 4, 6), (1, 1, 6, 1)]
    assert (m[5].sx, m[5].px, m[5].py, m[5].bias) == (2, -1, 0, False) and len(m[5].params()) == 1
    assert [p.dims() for p in m[7].params()] == [(6, 4, 1, 1), (6, 1, 1, 1)]
    assert len(m[8].params()) == 1
    assert [p.dims() for p in m[9].params()] == [(1, 1, 1, 1)] * 2
    # WeightNorm: v, g, bias (flashlight's params() order)
    assert [p.dims() for p in m[10].params()] == [(3, 1, 4, 6), (1, 1, 1, 6), (1, 1, 6, 1)]
    assert [p.dims() for p in m[11].params()] == [(6, 4, 1, 1), (6, 1, 1, 1), (6, 1, 1, 1)]
    assert m[14].mode == nn.AVG_INCLUDE_PADDING and m[13].mode == nn.MAX and m[14].px == -1
    assert m[19].beta == 2.5 and m[18].beta == 1.0


def test_wn_params_g_is_the_norm_of_v():
    wn = build_network(parse_arch_text("WN 3 C2 4 6 3 1 1 1", 5, 3), np.random.default_rng(1)).modules()[0]
    v, g = wn.params()[0].host(), wn.params()[1].host()
    np.testing.assert_allclose(g.reshape(-1), np.sqrt((v.astype(np.float64) ** 2).sum(axis=(0, 1, 2))).reshape(-1), rtol=1e-6)
    wl = build_network(parse_arch_text("WN 0 L 4 6", 5, 3), np.random.default_rng(1)).modules()[0]
    v, g = wl.params()[0].host(), wl.params()[1].host()
    np.testing.assert_allclose(g.reshape(-1), np.linalg.norm(v.astype(np.float64), axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("XYZ 1 2", r"unknown layer code 'XYZ'"),
        ("TDS 4 3 2", r"'TDS' is a wav2letter layer that afmask does not implement"),
        ("C2 257 256 8 1", r"C2 takes 6 to 10 arguments, got 4; expected form: C2 NIN NOUT KW KH SX SY"),
        ("C 4 6 3", r"C takes 4 to 8 arguments, got 3; expected form: C NIN NOUT KW SX"),
        ("L 4", r"L takes 2 to 3 arguments, got 1; expected form: L NIN NOUT"),
        ("V -1 1 4", r"V takes 4 arguments, got 3"),
        ("RO 2 0 3", r"RO takes 4 arguments, got 3"),
        ("RO 2 0 3 3", r"permutation of 0 1 2 3"),
        ("R 1", r"R takes no arguments, got 1"),
        ("HT 2", r"HT takes no arguments"),
        ("GLU", r"GLU takes 1 argument, got 0; expected form: GLU DIM"),
        ("GLU 4", r"DIM must be 0..3"),
        ("DO", r"DO takes 1 argument"),
        ("DO 1.5", r"P must be in \[0, 1\)"),
        ("SH 1 2", r"SH takes 0 to 1 arguments"),
        ("LN", r"LN takes 1 to 3 arguments"),
        ("LN 0 0", r"distinct dims"),
        ("PD 0 1", r"PD takes 3 to 9 arguments \(an odd number\), got 2"),
        ("PD 0 1 2 3", r"PD takes 3 to 9 arguments \(an odd number\), got 4"),
        ("M 2 2 1", r"M takes 4 to 6 arguments"),
        ("A 2 2 1 1 0 0 0", r"A takes 4 to 6 arguments"),
        ("WN 0", r"WN takes a DIM and a layer"),
        ("WN 0 R", r"WN wraps a C, C1, C2 or L layer, got R"),
        ("WN 0 L 4", r"L takes 2 to 3 arguments"),
        ("C2 4 6 x 1 1 1", r"C2: KW must be an integer, got 'x'"),
        ("C2 4 6 3 1 1 1 0 0 2 1", r"dilation"),
        ("C 4 6 3 1 0 1 1 2", r"groups"),
        ("C2 4 0 3 1 1 1", r"NOUT must be >= 1"),
        ("C2 4 6 3 1 1 1 -2", r"PX must be >= 0 or -1"),
    ],
)
def test_bad_lines_name_file_line_and_form(tmp_path, line, pattern):
    path = _write(tmp_path, f"# header\nV -1 1 NFEAT 0\n{line}\nR\n")
    with pytest.raises(ArchError, match=pattern) as e:
        read_arch(path)
    err = e.value
    assert isinstance(err, ValueError)
    assert err.filename == str(path) and err.lineno == 3
    assert str(err).startswith(f"{path}:3: ") and line in str(err)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such .arch file"):
        read_arch(tmp_path / "nope.arch")
    with pytest.raises(ArchError, match="no layers found"):
        read_arch(_write(tmp_path, "# nothing\n\n"))


# ------------------------------------------------------------------ the original network


def test_original_arch_text_is_the_design_network():
    lines = original_arch(256).splitlines()
    assert lines[:3] == ["V -1 1 NFEAT 0", "C2 NFEAT 256 8 1 2 1 -1 -1", "R"]
    assert lines[3:17] == ["C2 256 256 8 1 1 1 -1 -1", "R"] * 7
    assert lines[17:] == ["RO 2 0 3 1", "L 256 512", "R", "L 512 NLABEL"]


def test_original_arch_gives_804_frames_for_1593(tmp_path):
    net = load_model(_write(tmp_path, original_arch(256)), seed=3)
    assert not net.isTrain() and all(not p.isCalcGrad() for p in net.params())
    assert len(net.params()) == 2 * 8 + 4
    assert net.params()[0].dims() == (8, 1, 257, 256) and net.params()[1].dims() == (1, 1, 256, 1)
    assert net.params()[-2].dims() == (31, 512, 1, 1)
    assert output_frames(net, 1593) == 804


@pytest.mark.parametrize("t, want", [(1, 8), (2, 8), (3, 9), (200, 107), (201, 108), (1592, 803)])
def test_same_padding_frame_counts(tmp_path, t, want):
    # stride 2 SAME keeps ceil(T/2) frames, each of the 7 stride-1 kernel-8 SAME convs adds one
    net = load_model(_write(tmp_path, original_arch(4)), seed=0)
    assert output_frames(net, t) == want


# ------------------------------------------------------------------ layers: values and gradients


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _check(fn, x, **kw):
    report = gradcheck(fn, [Variable(x, True)], **kw)
    assert report.passed, str(report)


def test_hardtanh_clamps_and_passes_gradient_inside():
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], np.float32)
    v = Variable(x, True)
    out = nn.HardTanh()(v)
    np.testing.assert_array_equal(out.host(), np.clip(x, -1, 1))
    out.backward()
    np.testing.assert_array_equal(v.grad().host(), [0, 0, 1, 1, 1, 0, 0])
    _check(nn.HardTanh(), _x((5, 4)) * 0.5)


def test_padding_values_and_gradient():
    x = _x((3, 2))
    out = nn.Padding([(1, 2), (0, 1)], -3.0)(Variable(x, False)).host()
    want = np.full((6, 3), -3.0)
    want[1:4, 0:2] = x
    np.testing.assert_array_equal(out, want)
    _check(nn.Padding([(1, 2), (0, 1), (1, 0)], 0.5), _x((3, 2, 2)))


def _pool_ref(x, wx, wy, sx, sy, px, py, mode):
    W, H = x.shape[:2]
    fill = -np.inf if mode == nn.MAX else 0.0
    xp = np.full((W + 2 * px, H + 2 * py) + x.shape[2:], fill)
    xp[px:px + W, py:py + H] = x
    real = np.zeros((W + 2 * px, H + 2 * py))
    real[px:px + W, py:py + H] = 1
    nx, ny = (W + 2 * px - wx) // sx + 1, (H + 2 * py - wy) // sy + 1
    out = np.zeros((nx, ny) + x.shape[2:])
    for i in range(nx):
        for j in range(ny):
            win = xp[i * sx:i * sx + wx, j * sy:j * sy + wy]
            if mode == nn.MAX:
                out[i, j] = win.max(axis=(0, 1))
            elif mode == nn.AVG_INCLUDE_PADDING:
                out[i, j] = win.sum(axis=(0, 1)) / (wx * wy)
            else:
                out[i, j] = win.sum(axis=(0, 1)) / real[i * sx:i * sx + wx, j * sy:j * sy + wy].sum()
    return out


@pytest.mark.parametrize("mode", [nn.MAX, nn.AVG_INCLUDE_PADDING, nn.AVG_EXCLUDE_PADDING])
@pytest.mark.parametrize("geom", [(2, 2, 2, 2, 0, 0), (3, 2, 1, 1, 1, 1), (3, 1, 2, 1, -1, -1)])
def test_pool2d_values_and_gradients(mode, geom):
    wx, wy, sx, sy, px, py = geom
    x = _x((7, 4, 3, 2), seed=1)
    pool = nn.Pool2D(wx, wy, sx, sy, px, py, mode)
    out = pool(Variable(x, False)).host()
    rpx = nn.derive_padding(7, wx, sx, px)
    rpy = nn.derive_padding(4, wy, sy, py)
    np.testing.assert_allclose(out, _pool_ref(x, wx, wy, sx, sy, rpx, rpy, mode), rtol=1e-12)
    _check(pool, x)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = np.zeros((4, 1), np.float32)  # all tied, as after a ReLU
    v = Variable(x, True)
    nn.Pool2D(2, 1, 2, 1)(v).backward()
    np.testing.assert_array_equal(v.grad().host().reshape(-1), [1, 0, 1, 0])


def test_glu_swish_elu_tanh_logsoftmax():
    x = _x((6, 3))
    h = x[:3] * (1 / (1 + np.exp(-x[3:])))
    np.testing.assert_allclose(nn.GatedLinearUnit(0)(Variable(x, False)).host(), h, rtol=1e-12)
    with pytest.raises(ValueError, match="odd size 3"):
        nn.GatedLinearUnit(1)(Variable(x, False))
    np.testing.assert_allclose(nn.Swish(2.0)(Variable(x, False)).host(), x / (1 + np.exp(-2 * x)), rtol=1e-12)
    np.testing.assert_allclose(nn.ELU()(Variable(x, False)).host(), np.where(x >= 0, x, np.expm1(x)), rtol=1e-12)
    for m in (nn.GatedLinearUnit(0), nn.Swish(0.7), nn.ELU(0.5), nn.Tanh(), nn.LogSoftmax(1)):
        _check(m, x)


def test_layernorm_normalises_over_its_axes():
    x = _x((4, 5, 3)) * 3 + 1
    ln = nn.LayerNorm([0, 1])
    ln.setParams(Variable(np.array([2.0]), True), 0)
    ln.setParams(Variable(np.array([0.5]), True), 1)
    out = ln(Variable(x, False)).host()
    mu = x.mean(axis=(0, 1), keepdims=True)
    var = x.var(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(out, 2 * (x - mu) / np.sqrt(var + 1e-5) + 0.5, rtol=1e-10)
    _check(ln, x)


def test_dropout_is_identity_in_evaluation_and_scales_in_training():
    x = np.ones((200, 50), np.float32)
    do = nn.Dropout(0.25, seed=0)
    do.eval()
    np.testing.assert_array_equal(do(Variable(x, False)).host(), x)
    do.train()
    y = do(Variable(x, False)).host()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02


def test_weightnorm_weight_and_gradients():
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 3, rng=rng)
    wn = nn.WeightNorm(lin, 0)
    v = _x((3, 4), seed=2)
    g = np.abs(_x((3, 1), seed=3)) + 0.5
    b = _x((3,), seed=4)
    x = _x((4, 5), seed=5)

    def fn(x_, v_, g_, b_):
        wn.setParams(v_, 0)
        wn.setParams(g_, 1)
        wn.setParams(b_, 2)
        wn.train()
        return wn(x_)

    out = fn(Variable(x), Variable(v), Variable(g), Variable(b)).host()
    w = v * g / np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(out, w @ x + b[:, None], rtol=1e-10)
    report = gradcheck(fn, [Variable(x, True), Variable(v, True), Variable(g, True), Variable(b, True)])
    assert report.passed, str(report)
    # evaluation mode uses the same weight, computed once
    fn(Variable(x), Variable(v), Variable(g), Variable(b))  # gradcheck left perturbed values behind
    wn.eval()
    np.testing.assert_allclose(wn(Variable(x)).host(), out, rtol=1e-12)


def test_weightnorm_conv_norm_over_all_dims_but_3():
    conv = nn.Conv2D(3, 4, 2, 1, rng=np.random.default_rng(0))
    wn = nn.WeightNorm(conv, 3)
    v = _x((2, 1, 3, 4), seed=1)
    g = np.abs(_x((1, 1, 1, 4), seed=2))
    wn.setParams(Variable(v), 0)
    wn.setParams(Variable(g), 1)
    wn.eval()
    w = v * g / np.sqrt((v ** 2).sum(axis=(0, 1, 2), keepdims=True))
    np.testing.assert_allclose(conv.param(0).host(), w, rtol=1e-12)
    with pytest.raises(TypeError, match="Linear and Conv2D only"):
        nn.WeightNorm(nn.ReLU(), 0)


def test_pretty_strings_mirror_flashlight():
    net = build_network(parse_arch_text("C2 4 6 8 1 2 1 -1 -1\nM 2 1 2 1 -1 0\nWN 0 L 4 6\nDO 0.1\nGLU 0", 4, 3))
    lines = [m.prettyString() for m in net.modules()]
    assert lines[0] == "Conv2D (4->6, 8x1, 2,1, SAME,SAME, 1, 1) (with bias)"
    assert lines[1] == "Pool2D-max (2x1, 2,1, SAME,0)"
    assert lines[2] == "WeightNorm (Linear (4->6) (with bias), 0)"
    assert lines[3] == "Dropout (0.1)" and lines[4] == "GatedLinearUnit (0)"


def test_network_backward_reaches_the_input_only_in_evaluation(tmp_path):
    net = load_model(_write(tmp_path, original_arch(8)), seed=0)
    x = Variable(_x((30, 257)).astype(np.float32), True)
    out = net(x)
    assert out.dims() == (31, 22, 1, 1)  # 15 + 7
    out.backward()
    assert x.grad().dims() == (30, 257, 1, 1)
    assert all(not p.isGradAvailable() for p in net.params())


def test_forward_refuses_a_transposed_or_non_finite_input(tmp_path):
    net = load_model(_write(tmp_path, original_arch(4)), seed=0)
    assert expected_features(net) == 257
    with pytest.raises(ValueError, match=r"shape \(T, 257\) .*got \(257, 300\)"):
        forward(net, np.zeros((257, 300), np.float32))  # K x T would pass the View silently
    bad = np.zeros((20, 257), np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        forward(net, bad)
    assert forward(net, np.zeros((20, 257), np.float64)).dtype == np.float32
