"""ArrayFire saveArray files: the real fixtures, byte-identical writing, and corrupt input."""

import json
import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afmask.io import AfFileError, ArrayInfo, list_arrays, read_array, read_arrays, save_array
from afmask.io import arrayfire_file

# --------------------------------------------------------------------------- the all_dtypes fixture

_I = list(range(24))  # column-major linear index of a 3x4x2 array
_FORMULAS = {  # (key, dtype, values of i) as all_dtypes.json describes them, exact in Python ints/floats
    "f32": (np.float32, [0.5 * i - 3 for i in _I]),
    "c32": (np.complex64, [complex(0.5 * i, -1.0 * i - 0.25) for i in _I]),
    "f64": (np.float64, [i / 3.0 for i in _I]),
    "c64": (np.complex128, [complex(i / 7.0, 2.0 * i + 0.125) for i in _I]),
    "b8": (np.bool_, [i % 3 == 0 for i in _I]),
    "s32": (np.int32, [(i - 12) * 100000007 for i in _I]),
    "u32": (np.uint32, [i * 180000001 for i in _I]),
    "u8": (np.uint8, [i * 11 for i in _I]),
    "s64": (np.int64, [(i - 12) * 700000000000000001 for i in _I]),
    "u64": (np.uint64, [i * 800000000000000003 for i in _I]),
    "s16": (np.int16, [(i - 12) * 2500 for i in _I]),
    "u16": (np.uint16, [i * 2800 for i in _I]),
}
_DUPLICATE = (np.int32, [1 - (i - 12) * 100000007 for i in _I])


def _af(dtype, values) -> np.ndarray:
    return np.array(values, dtype=dtype).reshape((3, 4, 2), order="F")


def _expected_entries() -> list[tuple[str, np.ndarray]]:
    """The 13 entries of all_dtypes.af, in file order."""
    return [(k, _af(*v)) for k, v in _FORMULAS.items()] + [("s32", _af(*_DUPLICATE))]


@pytest.fixture(scope="module")
def all_dtypes(shared) -> Path:
    return shared / "fixtures" / "arrayfire" / "all_dtypes.af"


def test_all_dtypes_index_matches_json(all_dtypes):
    meta = json.loads(all_dtypes.with_suffix(".json").read_text())
    infos = list_arrays(all_dtypes)
    assert len(infos) == meta["n_arrays_in_header"] == 13
    for info, entry in zip(infos, meta["entries"]):
        assert (info.index, info.key, info.dtype) == (entry["index"], entry["key"], entry["af_dtype"])
        assert info.dims == tuple(entry["dims"])
        assert info.shape == (3, 4, 2)
    # Data offsets follow the format: 5-byte file header, then per entry 4 + key + 8 + 1 + 32 bytes.
    assert infos[0].data_offset == 5 + 4 + 3 + 8 + 1 + 32


def test_all_dtypes_read_exactly(all_dtypes):
    for index, (key, want) in enumerate(_expected_entries()):
        got = read_array(all_dtypes, index=index)
        assert got.dtype == want.dtype, key
        assert got.shape == (3, 4, 2)
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_duplicate_key_returns_first_match(all_dtypes):
    first = read_array(all_dtypes, key="s32")
    np.testing.assert_array_equal(first, _af(*_FORMULAS["s32"]))
    np.testing.assert_array_equal(read_array(all_dtypes, index=12), _af(*_DUPLICATE))
    everything = read_arrays(all_dtypes)
    assert list(everything) == list(_FORMULAS)
    np.testing.assert_array_equal(everything["s32"], first)


def test_writing_same_sequence_is_byte_identical(all_dtypes, tmp_path):
    out = tmp_path / "mine.af"
    indices = [save_array(key, arr, out, append=n > 0) for n, (key, arr) in enumerate(_expected_entries())]
    assert indices == list(range(13))
    assert out.read_bytes() == all_dtypes.read_bytes()


def test_fortran_and_c_order_and_big_endian_write_the_same_bytes(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    paths = []
    for n, variant in enumerate([a, np.asfortranarray(a), a.astype(">f4"), a[:, ::-1, :][:, ::-1, :]]):
        paths.append(tmp_path / f"{n}.af")
        save_array("a", variant, paths[-1])
    assert len({p.read_bytes() for p in paths}) == 1
    np.testing.assert_array_equal(read_array(paths[0], key="a"), a)


# --------------------------------------------------------------------------- real C++ dumps


def test_flashlight_functions_fixture(shared):
    path = shared / "fixtures" / "flashlight" / "flashlight_functions.af"
    index = json.loads((path.parent / "flashlight_functions_index.json").read_text())["keys"]
    infos = list_arrays(path)
    assert [i.key for i in infos] == list(index)
    for info in infos:
        assert (info.dtype, list(info.dims)) == (index[info.key]["dtype"], index[info.key]["dims"])
    arrays = read_arrays(path)
    assert arrays["x4"].shape == (2, 3, 4, 5)
    assert arrays["reorder_out"].shape == (4, 2, 5, 3)
    assert arrays["moddims_view_out"].shape == (40, 1, 31)
    assert arrays["af_norm_x"].dtype == np.float64 and arrays["af_norm_x"].shape == (1,)
    # reorder(2,0,3,1) of x4: out(a, b, c, d) = x4(b, d, a, c), a column-major layout check.
    np.testing.assert_array_equal(arrays["reorder_out"], arrays["x4"].transpose(2, 0, 3, 1))
    np.testing.assert_array_equal(arrays["moddims_out"],
                                  arrays["x"].reshape((62, 20), order="F"))
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_cpp_dump_fixtures(shared):
    folder = shared / "fixtures" / "cpp_dump"
    index = json.loads((folder / "dump_index.json").read_text())["dump_letters_it0.af"]
    infos = list_arrays(folder / "dump_letters_it0.af")
    assert [i.key for i in infos] == list(index)
    for info in infos:
        assert (info.dtype, list(info.dims)) == (index[info.key]["dtype"], index[info.key]["dims"])
    assert read_array(folder / "dump_letters_it0.af", key="fft").shape == (514, 300)
    np.testing.assert_array_equal(read_array(folder / "dump_letters_it0.af", key="m"),
                                  np.full((514, 300), 0.1, np.float32))
    params = list_arrays(folder / "linear_params.af")
    assert [(p.key, p.dtype, p.shape) for p in params] == [("weight", "f32", (31, 257)), ("bias", "f32", (31,))]


# --------------------------------------------------------------------------- writing


@pytest.mark.parametrize("shape, dims", [
    ((), (1, 1, 1, 1)), ((1,), (1, 1, 1, 1)), ((5,), (5, 1, 1, 1)), ((5, 1), (5, 1, 1, 1)),
    ((1, 5), (1, 5, 1, 1)), ((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 1, 3), (2, 1, 3, 1)), ((0,), (0, 1, 1, 1)),
    ((2, 0, 3), (2, 0, 3, 1)),
])
def test_shapes_round_trip_in_arrayfire_orientation(tmp_path, shape, dims):
    a = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    save_array("a", a, tmp_path / "a.af")
    (info,) = list_arrays(tmp_path / "a.af")
    assert info.dims == dims
    got = read_array(tmp_path / "a.af", index=0)
    want_shape = list(dims)
    while len(want_shape) > 1 and want_shape[-1] == 1:
        want_shape.pop()
    assert got.shape == tuple(want_shape)
    np.testing.assert_array_equal(got, a.reshape(got.shape))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
       code=st.sampled_from(sorted(arrayfire_file.DTYPE_CODES)), seed=st.integers(0, 2**32 - 1))
def test_random_arrays_round_trip(tmp_dir, shape, code, seed):
    name, stored = arrayfire_file.DTYPE_CODES[code]
    raw = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * stored.itemsize, dtype=np.uint8)
    a = raw.view(stored).reshape(shape) if name != "b8" else (raw % 2 == 1).reshape(shape)
    path = tmp_dir / "rt.af"
    save_array("k", np.asfortranarray(a) if seed % 2 else a, path)
    got = read_array(path, key="k")
    assert list_arrays(path)[0].dtype == name
    np.testing.assert_array_equal(got.reshape(a.shape), a)  # NaN payloads compare equal bitwise below
    assert got.tobytes(order="F") == np.asarray(a, dtype=got.dtype).tobytes(order="F")


@pytest.mark.parametrize("dtype", [np.float16, np.int8, np.longdouble, object, "U3", "datetime64[s]"])
def test_unsupported_dtype_is_a_type_error(tmp_path, dtype):
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=r"(?s)cannot be saved.*float32 \(f32\).*uint16 \(u16\)") as e:
        save_array("a", np.zeros(3, dtype=dtype), tmp_path / "a.af")
    assert str(np.dtype(dtype)) in str(e.value)
    assert not (tmp_path / "a.af").exists()


def test_more_than_four_dims_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="5 dims"):
        save_array("a", np.zeros((1, 2, 1, 2, 2)), tmp_path / "a.af")


def test_bad_keys(tmp_path):
    with pytest.raises(ValueError, match="NUL"):
        save_array("a\0b", np.zeros(3), tmp_path / "a.af")
    with pytest.raises(TypeError, match="key must be a str"):
        save_array(b"a", np.zeros(3), tmp_path / "a.af")


def test_unicode_and_empty_keys_round_trip(tmp_path):
    path = tmp_path / "k.af"
    save_array("grüße", np.ones(2, np.float32), path)
    save_array("", np.zeros(2, np.float32), path, append=True)
    assert [i.key for i in list_arrays(path)] == ["grüße", ""]
    np.testing.assert_array_equal(read_array(path, key=""), np.zeros(2, np.float32))


def test_append_creates_missing_and_empty_files(tmp_path):
    assert save_array("a", np.ones(3), tmp_path / "new.af", append=True) == 0
    (tmp_path / "empty.af").write_bytes(b"")
    assert save_array("a", np.ones(3), tmp_path / "empty.af", append=True) == 0
    assert (tmp_path / "new.af").read_bytes() == (tmp_path / "empty.af").read_bytes()


def test_overwrite_without_append_starts_a_new_file(tmp_path):
    path = tmp_path / "a.af"
    save_array("a", np.ones(3), path)
    save_array("b", np.ones(3), path, append=True)
    assert save_array("c", np.zeros(2), path) == 0
    assert [i.key for i in list_arrays(path)] == ["c"]


def test_append_to_a_corrupt_file_refuses_and_keeps_it(tmp_path):
    path = tmp_path / "bad.af"
    path.write_bytes(b"\x01\x05\x00\x00\x00garbage")
    with pytest.raises(AfFileError):
        save_array("a", np.ones(3), path, append=True)
    assert path.read_bytes() == b"\x01\x05\x00\x00\x00garbage"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.af"
    save_array("a", np.ones(3), path)
    before = path.read_bytes()

    def boom(f, entries):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(arrayfire_file, "_write_entries", boom)
    for append in (False, True):
        with pytest.raises(OSError, match="disk full"):
            save_array("b", np.zeros(3), path, append=append)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.af"]


def test_new_file_permissions_follow_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        save_array("a", np.ones(3), tmp_path / "a.af")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.af").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- lookups and corrupt files


def _small_file(tmp_path) -> Path:
    path = tmp_path / "small.af"
    save_array("alpha", np.arange(6, dtype=np.float32).reshape(2, 3), path)
    save_array("beta", np.array([1 + 2j], np.complex128), path, append=True)
    save_array("gamma", np.array([True, False]), path, append=True)
    return path


def test_argument_errors(tmp_path):
    path = _small_file(tmp_path)
    with pytest.raises(TypeError, match="exactly one"):
        read_array(path)
    with pytest.raises(TypeError, match="exactly one"):
        read_array(path, index=0, key="alpha")
    with pytest.raises(AfFileError, match=r"key 'delta' not found among 3 arrays \('alpha', 'beta', 'gamma'\)") as e:
        read_array(path, key="delta")
    assert e.value.filename == str(path) and e.value.offset == 1
    for index in (3, -1):
        with pytest.raises(AfFileError, match=f"index {index} out of range: the file holds 3"):
            read_array(path, index=index)
    with pytest.raises(FileNotFoundError):
        read_array(tmp_path / "missing.af", index=0)


def _expect(path: Path, data: bytes, offset: int, pattern: str):
    path.write_bytes(data)
    with pytest.raises(AfFileError, match=pattern) as e:
        list_arrays(path)
    assert isinstance(e.value, ValueError)
    assert (e.value.filename, e.value.offset) == (str(path), offset)
    assert str(path) in str(e.value) and f"byte {offset}" in str(e.value)


def _entry(key=b"k", offset=None, code=0, dims=(1, 1, 1, 1), data=b"\0\0\0\0"):
    offset = 33 + len(data) if offset is None else offset
    return struct.pack("<i", len(key)) + key + struct.pack("<qb4q", offset, code, *dims) + data


def test_hand_made_corruptions(tmp_path):
    p = tmp_path / "c.af"
    head = b"\x01" + struct.pack("<i", 1)
    _expect(p, b"", 0, "file is empty")
    _expect(p, b"\x01\x00", 0, "file ends inside the file header")
    _expect(p, b"\x02" + struct.pack("<i", 1) + _entry(), 0, "unknown format version 2")
    _expect(p, b"\x01" + struct.pack("<i", -1), 1, "array count -1 cannot fit")
    _expect(p, b"\x01" + struct.pack("<i", 2**31 - 1) + _entry(), 1, "array count 2147483647 cannot fit")
    _expect(p, head + struct.pack("<i", -5) + b"\0" * 60, 5, "key length -5")
    _expect(p, head + struct.pack("<i", 2**31 - 1) + b"\0" * 60, 5, "key length 2147483647")
    _expect(p, head + _entry(code=12), 5 + 4 + 1 + 8, "unknown dtype code 12")
    _expect(p, head + _entry(code=-1), 5 + 4 + 1 + 8, "unknown dtype code -1")
    _expect(p, head + _entry(dims=(1, -1, 1, 1)), 5 + 4 + 1 + 9, "negative dims")
    _expect(p, head + _entry(dims=(2**62, 2**62, 2**62, 2**62)), 5 + 4 + 1 + 9, "needs .* bytes of data")
    _expect(p, head + _entry(offset=99), 5 + 4 + 1, "entry offset 99 .*expected 37")
    _expect(p, head + _entry() + b"x", 5 + 50, "1 unexpected bytes after the last of 1 arrays")
    _expect(p, head + _entry()[:-1], 5 + 4 + 1 + 9, "needs 4 bytes of data but only 3")


def test_absurd_dims_allocate_nothing(tmp_path):
    path = tmp_path / "huge.af"
    path.write_bytes(b"\x01" + struct.pack("<i", 1) + _entry(code=2, dims=(2**20, 2**20, 1, 1), data=b"\0" * 64))
    tracemalloc.start()
    try:
        with pytest.raises(AfFileError, match="needs 8796093022208 bytes"):
            read_array(path, index=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_every_truncation_of_a_small_file(tmp_path):
    path = _small_file(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.af"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        with pytest.raises(AfFileError):
            list_arrays(cut)


# Hypothesis: whatever the bytes, the reader returns consistent arrays or raises AfFileError.


@pytest.fixture(scope="module")
def tmp_dir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _read_everything_or_af_error(path: Path, size: int) -> None:
    try:
        infos = list_arrays(path)
    except AfFileError as e:
        assert e.filename == str(path) and 0 <= e.offset <= size
        return
    for info in infos:
        assert isinstance(info, ArrayInfo) and info.data_offset + info.nbytes <= size
        a = read_array(path, index=info.index)
        assert a.shape == info.shape


@pytest.fixture(scope="module")
def valid_bytes(tmp_dir) -> bytes:
    return _small_file(tmp_dir).read_bytes()


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), prefix=st.booleans())
def test_random_bytes(tmp_dir, data, prefix):
    if prefix:  # a valid version and small count, so the walk gets past the file header
        data = b"\x01" + struct.pack("<i", len(data) % 4) + data
    path = tmp_dir / "random.af"
    path.write_bytes(data)
    _read_everything_or_af_error(path, len(data))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_truncations_and_byte_flips(tmp_dir, valid_bytes, data):
    buf = bytearray(valid_bytes[: data.draw(st.integers(0, len(valid_bytes)), label="length")])
    for _ in range(data.draw(st.integers(0, 3), label="flips")):
        if buf:
            at = data.draw(st.integers(0, len(buf) - 1), label="at")
            buf[at] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_dir / "flipped.af"
    path.write_bytes(bytes(buf))
    _read_everything_or_af_error(path, len(buf))
