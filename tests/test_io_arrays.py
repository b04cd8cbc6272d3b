"""Named-array files by extension (.af, .npz, .npy), and the io layer's imports."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import afmask.io
from afmask.io import AfFileError, load_arrays, read_array, save_array, save_arrays

_ARRAYS = {
    "fft": np.arange(12, dtype=np.float32).reshape((3, 4), order="F"),
    "mask": np.array([[True, False], [False, True]]),
    "count": np.array([7], np.int64),
    "cplx": np.array([1 + 1j, 2 - 3j], np.complex64),
    "cube": np.arange(24, dtype=np.float64).reshape(2, 3, 4),
}


@pytest.mark.parametrize("ext", [".af", ".npz"])
def test_round_trip_many(tmp_path, ext):
    path = tmp_path / f"a{ext}"
    save_arrays(path, _ARRAYS)
    got = load_arrays(path)
    assert list(got) == list(_ARRAYS)
    for key, want in _ARRAYS.items():
        assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want)


def test_af_equals_save_array_with_append(tmp_path):
    save_arrays(tmp_path / "one.af", _ARRAYS)
    for n, (key, arr) in enumerate(_ARRAYS.items()):
        save_array(key, arr, tmp_path / "seq.af", append=n > 0)
    assert (tmp_path / "one.af").read_bytes() == (tmp_path / "seq.af").read_bytes()


def test_af_fixture_loads_first_of_duplicate_key(shared):
    path = shared / "fixtures" / "arrayfire" / "all_dtypes.af"
    got = load_arrays(path)
    assert len(got) == 12
    np.testing.assert_array_equal(got["s32"], read_array(path, index=5))


def test_npz_fixture_and_awkward_keys(shared, tmp_path):
    z = load_arrays(shared / "fixtures" / "w2l_features" / "clean-100.npz")
    assert {k: v.shape for k, v in z.items()} == {"samples": (99200,), "fft": (514, 618), "magnitude": (257, 618)}
    # Keys that would clash with np.savez's own parameters still round-trip.
    awkward = {"file": np.zeros(2), "allow_pickle": np.ones(3), "a/b": np.arange(2)}
    save_arrays(tmp_path / "k.npz", awkward)
    got = load_arrays(tmp_path / "k.npz")
    assert list(got) == list(awkward)
    assert dict(np.load(tmp_path / "k.npz")).keys() == awkward.keys()  # readable by plain NumPy too


def test_npy_single_array_keyed_by_stem(shared, tmp_path):
    path = tmp_path / "logits.npy"
    save_arrays(path, {"anything": _ARRAYS["fft"]})
    got = load_arrays(path)
    assert list(got) == ["logits"]
    np.testing.assert_array_equal(got["logits"], _ARRAYS["fft"])
    np.testing.assert_array_equal(np.load(path), _ARRAYS["fft"])
    fixture = load_arrays(shared / "fixtures" / "original_model" / "utt-000000000_output.npy")
    assert fixture["utt-000000000_output"].shape == (31, 804)
    for bad in ({}, {"a": np.zeros(1), "b": np.zeros(1)}):
        with pytest.raises(ValueError, match="exactly one array"):
            save_arrays(tmp_path / "x.npy", bad)


def test_wrong_extension(tmp_path):
    for name in ("a.txt", "a", "a.npz.bak"):
        with pytest.raises(ValueError, match=r"unknown extension .*\.af, \.npz, \.npy"):
            save_arrays(tmp_path / name, {"a": np.zeros(1)})
        with pytest.raises(ValueError, match="unknown extension"):
            load_arrays(tmp_path / name)
    save_arrays(tmp_path / "UPPER.NPZ", {"a": np.zeros(1)})
    assert list(load_arrays(tmp_path / "UPPER.NPZ")) == ["a"]


def test_bad_contents_are_refused_before_writing(tmp_path):
    path = tmp_path / "keep.af"
    save_arrays(path, {"a": np.zeros(1)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="float16"):
        save_arrays(path, {"ok": np.zeros(2), "half": np.zeros(2, np.float16)})
    with pytest.raises(TypeError, match="object"):
        save_arrays(tmp_path / "o.npz", {"o": np.array([None, 1], dtype=object)})
    with pytest.raises(TypeError, match="names must be str"):
        save_arrays(tmp_path / "o.npz", {1: np.zeros(1)})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.af"]


def test_failed_npz_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        save_arrays(tmp_path / "x.npz", {"a": np.zeros(3)})
    assert os.listdir(tmp_path) == []


def test_corrupt_and_missing_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable \.npz file"):
        load_arrays(tmp_path / "bad.npz")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"bad\.npy: not a readable \.npy file"):
        load_arrays(tmp_path / "bad.npy")
    (tmp_path / "bad.af").write_bytes(b"\x07")
    with pytest.raises(AfFileError):
        load_arrays(tmp_path / "bad.af")
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "missing.npz")


def test_io_imports_no_later_layer():
    code = ("import sys, afmask.io; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('afmask'))))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    modules = out.stdout.split()
    assert all(m == "afmask" or m.startswith("afmask.io") for m in modules), modules
    assert set(afmask.io.__all__) >= {"save_array", "read_array", "list_arrays", "read_arrays", "read_af_string",
                                      "load_audio", "write_audio", "save_arrays", "load_arrays"}
