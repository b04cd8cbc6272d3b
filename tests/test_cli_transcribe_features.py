"""``afmask transcribe`` and ``afmask features``: outputs, formats, and one-line errors for bad input."""

import numpy as np
import pytest
import soundfile as sf

import afmask.cli as cli
from afmask.features import features
from afmask.io import load_arrays, load_audio, read_arrays, write_audio
from afmask.model import forward, greedy_decode, load_model, save_params
from afmask.model import network as network_mod

ARCH = "V -1 1 NFEAT 0\nRO 2 0 3 1\nL NFEAT NLABEL\n"


@pytest.fixture(autouse=True)
def only_these_commands(monkeypatch):
    # the sub-commands under test, without depending on the other modules of afmask.cli
    monkeypatch.setattr(cli, "COMMANDS", ["transcribe", "features"])


@pytest.fixture
def audio(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t) + 0.02 * rng.standard_normal(t.size)
    path = tmp_path / "utt.flac"
    write_audio(path, x.astype(np.float32))
    return path


@pytest.fixture
def model(tmp_path):
    arch = tmp_path / "lin.arch"
    arch.write_text(ARCH)
    params = tmp_path / "lin.af"
    save_params(load_model(arch, seed=11), params)
    return arch, params


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, command, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"afmask {command}: error: ")
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ------------------------------------------------------------------ transcribe


@pytest.mark.parametrize("ext", [".npy", ".npz", ".af"])
def test_transcribe_prints_the_greedy_transcript_and_saves_emissions(tmp_path, capsys, audio, model, ext):
    arch, params = model
    out_path = tmp_path / f"em{ext}"
    code, out, err = run(["transcribe", audio, "--arch", arch, "--params", params, "--emissions", out_path], capsys)
    assert code == 0, err
    want = forward(load_model(arch, params), features(load_audio(audio))["input"])
    assert want.shape == (31, 98)
    assert out == greedy_decode(want) + "\n"
    saved = load_arrays(out_path)
    key = "em" if ext == ".npy" else "emissions"
    assert list(saved) == [key]
    np.testing.assert_array_equal(saved[key], want)


def test_transcribe_resample_and_channel(tmp_path, capsys, audio, model):
    arch, params = model
    x = load_audio(audio)
    stereo = tmp_path / "stereo_8k.wav"
    sf.write(stereo, np.stack([x[::2], -x[::2]], axis=1), 8000)
    code, out, err = run(["transcribe", stereo, "--arch", arch, "--params", params], capsys)
    _one_line_error(code, err, "transcribe", str(stereo), "2 channels", "--channel")
    code, out, err = run(["transcribe", stereo, "--arch", arch, "--params", params, "--channel", "1"], capsys)
    _one_line_error(code, err, "transcribe", "8000 Hz", "--resample")
    code, out, err = run(["transcribe", stereo, "--arch", arch, "--params", params, "--channel", "1", "--resample"], capsys)
    assert code == 0 and len(out.splitlines()) == 1, err


def test_transcribe_errors_are_one_line(tmp_path, capsys, audio, model, monkeypatch):
    arch, params = model
    code, _, err = run(["transcribe", tmp_path / "missing.wav", "--arch", arch, "--params", params], capsys)
    _one_line_error(code, err, "transcribe", "missing.wav", "no such file")
    code, _, err = run(["transcribe", audio, "--arch", arch], capsys)
    _one_line_error(code, err, "transcribe", "--arch and --params go together")
    code, _, err = run(["transcribe", audio, "--model", "demo", "--arch", arch, "--params", params], capsys)
    _one_line_error(code, err, "transcribe", "either --model or --arch/--params")
    code, _, err = run(["transcribe", audio, "--arch", arch, "--params", tmp_path / "nope.af"], capsys)
    _one_line_error(code, err, "transcribe", "nope.af", "--params")
    code, _, err = run(["transcribe", audio, "--arch", arch, "--params", params, "--emissions", tmp_path / "e.txt"], capsys)
    _one_line_error(code, err, "transcribe", "e.txt", ".npy, .npz, .af")
    code, _, err = run(["transcribe", audio, "--arch", arch, "--params", params, "--emissions", tmp_path / "no" / "e.npy"], capsys)
    _one_line_error(code, err, "transcribe", "does not exist")
    bad_arch = tmp_path / "bad.arch"
    bad_arch.write_text("V -1 1 NFEAT 0\nC2 NFEAT 4 8\n")
    code, _, err = run(["transcribe", audio, "--arch", bad_arch, "--params", params], capsys)
    _one_line_error(code, err, "transcribe", f"{bad_arch}:2:", "C2 NIN NOUT KW KH SX SY")
    other = tmp_path / "other.arch"
    other.write_text("V -1 1 NFEAT 0\nRO 2 0 3 1\nL NFEAT 20\nL 20 NLABEL\n")
    code, _, err = run(["transcribe", audio, "--arch", other, "--params", params], capsys)
    _one_line_error(code, err, "transcribe", "holds 2 arrays, the network has 4 parameters")
    monkeypatch.setattr(network_mod, "DEMO_FOLDER", ("data", "no-such-demo"))
    code, _, err = run(["transcribe", audio], capsys)
    _one_line_error(code, err, "transcribe", "demo model is not installed")
    assert not (tmp_path / "e.txt").exists()


# ------------------------------------------------------------------ features


@pytest.mark.parametrize("ext", [".af", ".npz"])
def test_features_writes_fft_magnitude_input(tmp_path, capsys, audio, ext):
    out_path = tmp_path / f"feats{ext}"
    code, out, err = run(["features", audio, "-o", out_path], capsys)
    assert code == 0, err
    assert str(out_path) in out
    saved = read_arrays(out_path) if ext == ".af" else dict(np.load(out_path))
    want = features(load_audio(audio))
    assert list(saved) == ["fft", "magnitude", "input"]
    assert saved["fft"].shape == (514, 98) and saved["magnitude"].shape == (257, 98) and saved["input"].shape == (98, 257)
    for k in saved:
        assert saved[k].dtype == np.float32
        np.testing.assert_array_equal(saved[k], want[k])


def test_features_arrayfire_stats(tmp_path, capsys, audio):
    out_path = tmp_path / "f.npz"
    code, _, err = run(["features", audio, "-o", out_path, "--stats", "arrayfire_cpu"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out_path)["input"], features(load_audio(audio), stats="arrayfire_cpu")["input"])


def test_features_errors_are_one_line(tmp_path, capsys, audio):
    code, _, err = run(["features", tmp_path / "missing.flac", "-o", tmp_path / "f.af"], capsys)
    _one_line_error(code, err, "features", "missing.flac", "no such file")
    code, _, err = run(["features", audio, "-o", tmp_path / "f.npy"], capsys)
    _one_line_error(code, err, "features", "f.npy", ".af or .npz")
    low = tmp_path / "low.wav"
    sf.write(low, np.zeros(8000, np.float32) + 0.1, 22050)
    code, _, err = run(["features", low, "-o", tmp_path / "f.af"], capsys)
    _one_line_error(code, err, "features", "22050 Hz", "--resample")
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.1, np.float32), 16000)
    code, _, err = run(["features", short, "-o", tmp_path / "f.af"], capsys)
    _one_line_error(code, err, "features", "short.wav")
    assert not (tmp_path / "f.af").exists()
    with pytest.raises(SystemExit):
        cli.main(["features", str(audio)])  # -o is required: argparse's usage error
    capsys.readouterr()
