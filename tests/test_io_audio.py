"""Audio loading and writing: real recordings, and one generated file per kind of bad input."""

import os

import numpy as np
import pytest
import soundfile as sf

from afmask.io import AudioError, load_audio, write_audio
from afmask.io import audio as audio_mod

RATE = 16000


def _tone(n: int = 8000, rate: int = RATE, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def _write(path, data, rate=RATE, subtype="PCM_16"):
    sf.write(path, data, rate, subtype=subtype)
    return path


def _raises(path, pattern, **kwargs) -> AudioError:
    with pytest.raises(AudioError, match=pattern) as e:
        load_audio(path, **kwargs)
    assert isinstance(e.value, ValueError)
    assert e.value.filename == str(path) and str(e.value).startswith(str(path))
    return e.value


# --------------------------------------------------------------------------- real files


def test_clean_100_matches_the_samples_the_cpp_features_used(shared):
    x = load_audio(shared / "data" / "librispeech" / "clean-100.flac")
    want = np.load(shared / "fixtures" / "w2l_features" / "clean-100.npz")["samples"]
    assert x.dtype == np.float32 and x.shape == (99200,)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("name, n", [
    ("librispeech/utt-000000000.flac", 255120),
    ("librivox/sense_and_sensibility_01_austen_64kb-0870.wav", 113600),
    ("librivox/sense_and_sensibility_01_austen_64kb-0890.wav", 84800),
    ("librivox/sense_and_sensibility_01_austen_64kb-0920.wav", 96800),
])
def test_shared_recordings_load(shared, name, n):
    x = load_audio(shared / "data" / name)
    assert x.dtype == np.float32 and x.shape == (n,) and x.flags.c_contiguous
    assert -1.0 <= x.min() and x.max() < 1.0
    # 16-bit sources decode to multiples of 1/32768.
    np.testing.assert_array_equal(x * 32768, np.round(x * 32768))


# --------------------------------------------------------------------------- bad input


def test_missing_empty_and_unreadable_files(tmp_path):
    _raises(tmp_path / "nope.wav", "no such file")
    (tmp_path / "empty.wav").write_bytes(b"")
    _raises(tmp_path / "empty.wav", r"file is empty .*sox")
    (tmp_path / "junk.flac").write_bytes(b"this is not audio at all" * 10)
    _raises(tmp_path / "junk.flac", "libsndfile cannot read it .*WAV or FLAC")
    _raises(tmp_path, "is a folder")


def test_no_samples(tmp_path):
    _raises(_write(tmp_path / "zero.wav", np.zeros(0, np.float32)), "contains no samples")


def test_too_short(tmp_path):
    _raises(_write(tmp_path / "short.wav", _tone(399)), r"has 399 samples .*at least 400 \(one 25 ms frame\)")
    assert load_audio(_write(tmp_path / "ok.wav", _tone(400))).shape == (400,)


def test_wrong_rate_says_how_to_fix(tmp_path):
    err = _raises(_write(tmp_path / "cd.wav", _tone(44100, rate=44100), rate=44100),
                  r"sample rate is 44100 Hz; afmask needs 16000 Hz")
    assert "resample=True" in str(err) and "--resample" in str(err)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample(tmp_path, rate):
    n = rate  # one second
    path = _write(tmp_path / f"r{rate}.wav", _tone(n, rate=rate, freq=440.0), rate=rate)
    x = load_audio(path, resample=True)
    assert x.dtype == np.float32 and x.shape == (RATE,)
    # Away from the edges the resampled tone is the 16 kHz tone (filter ripple and 16-bit quantisation).
    np.testing.assert_allclose(x[200:-200], _tone(RATE)[200:-200], atol=2e-3)


def test_resampling_keeps_the_range_below_one(tmp_path):
    square = np.where(np.arange(22050) % 50 < 25, 0.999, -0.999).astype(np.float32)
    x = load_audio(_write(tmp_path / "sq.wav", square, rate=22050), resample=True)
    assert -1.0 <= x.min() and x.max() < 1.0


def test_stereo_needs_a_channel(tmp_path):
    left, right = _tone(1000, freq=300), _tone(1000, freq=500)
    path = _write(tmp_path / "st.wav", np.stack([left, right], axis=1))
    err = _raises(path, r"has 2 channels; afmask needs mono: choose one with channel=0..1")
    assert "--channel" in str(err)
    np.testing.assert_allclose(load_audio(path, channel=1), right, atol=1 / 32768)
    np.testing.assert_allclose(load_audio(path, channel=0), left, atol=1 / 32768)
    _raises(path, r"channel=2 is not one of its 2 channel\(s\)", channel=2)
    mono = _write(tmp_path / "mono.wav", left)
    assert load_audio(mono, channel=0).shape == (1000,)
    _raises(mono, "channel=1 is not one", channel=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(tmp_path, bad):
    x = _tone(1000)
    x[123] = bad
    _raises(_write(tmp_path / "nan.wav", x, subtype="FLOAT"), r"1 samples are NaN or infinite \(first at sample 123\)")


def test_clipping_threshold(tmp_path):
    x = _tone(16000, amp=0.3)
    x[:16] = 1.0  # 0.1 % exactly: allowed
    assert load_audio(_write(tmp_path / "edge.wav", x)).shape == (16000,)
    x[16] = -1.0  # one more: clipped
    path = _write(tmp_path / "clip.wav", x)
    err = _raises(path, r"17 of 16000 samples \(0.11 %\) are at or beyond full scale \(limit 0.1 %\)")
    assert "allow_clipping=True" in str(err)
    assert load_audio(path, allow_clipping=True).shape == (16000,)
    assert audio_mod.CLIP_LEVEL == 32767 / 32768 and audio_mod.CLIP_FRACTION == 0.001


def test_float_audio_beyond_full_scale(tmp_path):
    x = _tone(4000, amp=1.5)
    path = _write(tmp_path / "loud.wav", x, subtype="FLOAT")
    _raises(path, "clipped")
    y = load_audio(path, allow_clipping=True)
    assert -1.0 <= y.min() and y.max() < 1.0


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".flac", ".wav", ".WAV"])
def test_write_then_load_is_lossless_for_16_bit_samples(tmp_path, ext):
    x = (np.random.default_rng(0).integers(-32768, 32768, 4000) / 32768).astype(np.float32)
    path = tmp_path / f"a{ext}"
    write_audio(path, x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    assert info.format == ("FLAC" if ext == ".flac" else "WAV")
    np.testing.assert_array_equal(load_audio(path, allow_clipping=True), x)


def test_write_full_scale_and_other_rates(tmp_path):
    write_audio(tmp_path / "a.wav", np.array([1.0, -1.0, 0.5] * 200), rate=8000)
    y, rate = sf.read(tmp_path / "a.wav", dtype="int16")
    assert rate == 8000 and list(y[:3]) == [32767, -32768, 16384]


@pytest.mark.parametrize("samples, pattern", [
    (np.zeros((10, 2), np.float32), "1-D float array"),
    (np.zeros(10, np.int16), "1-D float array"),
    (np.array([0.0, 1.5]), r"reach 1.5, beyond \[-1, 1\]"),
    (np.array([0.0, np.nan]), "NaN"),
])
def test_write_rejects_bad_samples(tmp_path, samples, pattern):
    with pytest.raises(ValueError, match=pattern):
        write_audio(tmp_path / "x.wav", samples)
    assert os.listdir(tmp_path) == []


def test_write_rejects_unknown_extension_and_rate(tmp_path):
    with pytest.raises(ValueError, match=r"'\.mp3'; use \.flac or \.wav"):
        write_audio(tmp_path / "x.mp3", np.zeros(10))
    with pytest.raises(ValueError, match="rate must be a positive int"):
        write_audio(tmp_path / "x.wav", np.zeros(10), rate=0)


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.flac"
    write_audio(path, _tone(1000))
    before = path.read_bytes()

    def boom(f, *args, **kwargs):
        f.write(b"half a file")
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(audio_mod.sf, "write", boom)
    with pytest.raises(RuntimeError, match="encoder failed"):
        write_audio(path, _tone(2000))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.flac"]
