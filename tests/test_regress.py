"""`afmask regress`: the real C++ dump passes; dumps from an independent PyTorch loop pass; planted errors fail."""

import numpy as np
import pytest
import soundfile as sf

from afmask.cli import main
from afmask.io import save_array


def test_real_cpp_dump_passes(shared, capsys):
    d = shared / "fixtures" / "cpp_dump"
    rc = main(["regress", str(d / "dump_letters_it0.af"), "--arch", str(d / "linear.arch"), "--params", str(d / "linear_params.af")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PASS" in out
    for key in ("input", "output", "pre_output", "dy", "mgrad", "m_next", "loss", "f_loss"):
        assert f"\n{key} " in out


def test_real_cpp_dump_passes_as_one_chain(shared, capsys):
    d = shared / "fixtures" / "cpp_dump"
    rc = main(["regress", str(d / "dump_letters_it0.af"), "--arch", str(d / "linear.arch"), "--params",
               str(d / "linear_params.af"), "--chain"])
    assert rc == 0, capsys.readouterr().out


def test_real_cpp_dump_passes_with_float64_sums(shared, capsys):
    d = shared / "fixtures" / "cpp_dump"
    rc = main(["regress", str(d / "dump_letters_it0.af"), "--arch", str(d / "linear.arch"), "--params",
               str(d / "linear_params.af"), "--stats", "float64", "--norm", "float64"])
    assert rc == 0, capsys.readouterr().out


def test_missing_required_key_is_a_clear_error(tmp_path, shared, capsys):
    d = shared / "fixtures" / "cpp_dump"
    bad = tmp_path / "bad.af"
    save_array("fft", np.zeros((514, 3), np.float32), bad)
    rc = main(["regress", str(bad), "--arch", str(d / "linear.arch"), "--params", str(d / "linear_params.af")])
    assert rc == 2
    assert "required key" in capsys.readouterr().err


# --------------------------------------------------------- dumps written by an independent PyTorch loop
torch = pytest.importorskip("torch", reason="torch is not installed (the independent re-implementation is PyTorch)")
from torch_reference import torch_forward  # noqa: E402

ZEROED = [0, 1, 28, 29, 30]


def torch_post(out, variant):
    """The two post-processing variants, written out in torch: out is 31 x T'."""
    scaled = out / out.std(dim=1, keepdim=True, unbiased=True)
    if variant == 0:
        return torch.softmax(scaled[2:28], dim=0)
    keep = torch.ones(31, 1)
    keep[ZEROED] = 0
    return scaled * keep  # the lost softmax: rows 2..27 stay the scaled outputs


def normalise(mag):
    tr = mag.T
    return (tr - tr.mean()) / tr.std(unbiased=False)


def torch_iteration(net, fft, m, eps, lam, lr, variant):
    """One iteration of the original loop by torch autograd (no hand-written gradient)."""
    x = torch.from_numpy(fft)
    mt = torch.from_numpy(m).requires_grad_(True)
    e = torch.from_numpy(eps)
    K = fft.shape[0] // 2
    raw = x + mt * e
    inp = normalise(torch.sqrt(raw[0::2] ** 2 + raw[1::2] ** 2))
    inp.retain_grad()
    T = inp.shape[0]
    out = torch_forward(net, inp.reshape(T, K, 1, 1))[:, :, 0, 0]
    with torch.no_grad():
        clean = torch_forward(net, normalise(torch.sqrt(x[0::2] ** 2 + x[1::2] ** 2)).reshape(T, K, 1, 1))[:, :, 0, 0]
        pre = torch_post(clean, variant)
    f = ((pre - torch_post(out, variant)) ** 2).sum()
    m_sq = (mt.double() ** 2).sum()
    loss = f.double() - lam * torch.log(m_sq)
    loss.backward()
    mgrad = mt.grad.numpy()
    return {
        "input": inp.detach().numpy(), "output": out.detach().numpy(), "pre_output": pre.numpy(),
        "dy": inp.grad.numpy(), "mgrad": mgrad, "m_next": m - np.float32(lr) * mgrad,
        "loss": np.array([loss.item()], np.float32), "f_loss": np.array([f.item()], np.float32),
    }


@pytest.fixture(scope="module")
def original_model(tmp_path_factory):
    """The original architecture (width 256) with random weights, saved as .arch + .af params."""
    from afmask.model import build_network, original_arch, parse_arch_text, save_params

    folder = tmp_path_factory.mktemp("model")
    text = original_arch(256)
    (folder / "network.arch").write_text(text)
    net = build_network(parse_arch_text(text, 257, 31), np.random.default_rng(5))
    net.eval()
    save_params(net, folder / "params.af")
    return net, folder / "network.arch", folder / "params.af"


def write_dump(path, inputs, outputs, drop=()):
    for key, value in list(inputs.items()) + list(outputs.items()):
        if key not in drop:
            save_array(key, np.asarray(value, np.float32), path, append=path.exists())


@pytest.mark.parametrize("variant", [0, 1])
def test_independent_dumps_pass_and_planted_errors_fail(shared, original_model, tmp_path, capsys, variant):
    from afmask.features import pow_fft

    net, arch, params = original_model
    samples, _ = sf.read(shared / "data/librispeech/clean-100.flac", dtype="float32")
    fft = np.asfortranarray(pow_fft(samples[: 400 + 160 * 79]))  # 80 frames
    rng = np.random.default_rng(variant)
    m = np.asfortranarray(0.05 + 0.1 * rng.random(fft.shape, dtype=np.float32))
    eps = np.asfortranarray(rng.standard_normal(fft.shape, dtype=np.float32) * np.float32(fft.std()))
    inputs = {"fft": fft, "m": m, "eps": eps, "lambda": [10.0], "lr": [0.001], "variant": [variant]}
    outputs = torch_iteration(net, fft, m, eps, 10.0, 0.001, variant)

    good = tmp_path / "good.af"
    write_dump(good, inputs, outputs)
    args = ["regress", str(good), "--arch", str(arch), "--params", str(params)]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count(" pass") == 8

    # a planted error in one tensor: 5% of its largest value in one element
    for key in ("mgrad", "dy", "output"):
        bad = tmp_path / f"bad_{key}.af"
        planted = dict(outputs)
        planted[key] = np.array(outputs[key], copy=True)
        planted[key].flat[7] += 0.05 * np.abs(outputs[key]).max()
        write_dump(bad, inputs, planted)
        rc = main(["regress", str(bad), "--arch", str(arch), "--params", str(params)])
        out = capsys.readouterr().out
        assert rc == 1, out
        failed = out.split("FAIL: ")[1].split(" out of tolerance")[0].split(", ")
        assert failed[0] == key, out  # the stage that holds the error is the first to fail

    # a wrong lambda in the dump: the loss no longer matches
    wrong = tmp_path / "wrong_lambda.af"
    write_dump(wrong, {**inputs, "lambda": [11.0]}, outputs)
    assert main(["regress", str(wrong), "--arch", str(arch), "--params", str(params)]) == 1
    assert "loss" in capsys.readouterr().out.split("FAIL:")[1]
