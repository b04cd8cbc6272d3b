"""af::toString text dumps: the original model's preOutput, ArrayFire's layouts for 1-4 dims, bad text."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from afmask.io import AfTextError, read_af_string


def test_original_preoutput_dump(shared):
    folder = shared / "fixtures" / "original_model"
    title, a = read_af_string(folder / "utt-000000000_preOutput.txt")
    assert title == "preOutput is:"
    want = np.load(folder / "utt-000000000_output.npy")
    assert a.dtype == np.float32 and a.shape == (31, 804)
    np.testing.assert_array_equal(a, want)  # the .npy was parsed from this text: exact
    assert a[0, 0] == np.float32(-4.7946) and a[30, 803] == np.float32(14.5523)


# Literal dumps laid out as ArrayFire's printer writes them (transpose=true, precision 4).
_CASES = {
    "column": ("a\n[3 1 1 1]\n    1.0000 \n    2.0000 \n    3.0000 \n\n", np.array([1, 2, 3])),
    "row": ("r\n[1 3 1 1]\n    1.0000     2.0000     3.0000 \n", np.array([[1, 2, 3]])),
    "scalar": ("s\n[1 1 1 1]\n   -5.2500 \n", np.array([-5.25])),
    "matrix": ("m\n[2 3 1 1]\n    0.0000     2.0000     4.0000 \n    1.0000     3.0000     5.0000 \n\n",
               np.arange(6).reshape((2, 3), order="F")),
    "3d": ("t\n[2 2 2 1]\n    0.0000     2.0000 \n    1.0000     3.0000 \n\n"
           "    4.0000     6.0000 \n    5.0000     7.0000 \n\n\n", np.arange(8).reshape((2, 2, 2), order="F")),
    "4d": ("q\n[2 1 1 2]\n    0.0000 \n    1.0000 \n\n\n    2.0000 \n    3.0000 \n\n\n\n",
           np.arange(4).reshape((2, 1, 1, 2), order="F")),
    "wide": ("w\n[1 2 1 1]\n123456.1250 -nan \n", np.array([[123456.125, np.nan]])),
    "complex": ("c\n[2 1 1 1]\n(1.0000,-2.0000) \n(0.5000,0.2500) \n\n", np.array([1 - 2j, 0.5 + 0.25j])),
    "empty": ("e\n[0 3 1 1]\n<empty>\n", np.zeros((0, 3))),
    "debug build": ("d\n[2 1 1 1]\n   Offset: 0\n   Strides: [1 2 2 2]\n    1.0000 \n    2.0000 \n\n",
                    np.array([1, 2])),
    "crlf": ("w\r\n[2 1 1 1]\r\n    1.0000 \r\n    2.0000 \r\n\r\n", np.array([1, 2])),
    "trimmed": ("t\n[2 2 1 1]\n    1.0000     3.0000 \n    2.0000     4.0000", np.array([[1, 3], [2, 4]])),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_layouts(tmp_path, name):
    text, want = _CASES[name]
    path = tmp_path / "dump.txt"
    path.write_bytes(text.encode())
    title, got = read_af_string(path)
    assert title == text.splitlines()[0]
    assert got.shape == want.shape
    assert got.dtype == (np.complex64 if want.dtype.kind == "c" else np.float32)
    np.testing.assert_array_equal(got, want.astype(got.dtype))


def _af_to_string(title: str, a: np.ndarray, precision: int = 4) -> str:
    """What af::toString(title, a, precision) prints, as ArrayFire's print.cpp does it."""
    dims = tuple(a.shape) + (1,) * (4 - a.ndim)
    t = a.reshape(dims).transpose(1, 0, 2, 3)
    nd = 1 if t.size == 1 else max(i + 1 for i, d in enumerate(t.shape) if d != 1)
    out = [title + "\n", "[" + " ".join(map(str, dims)) + "]\n"]

    def printer(idx: tuple, dim: int) -> None:
        if dim == 0:
            row = t[(slice(None),) + idx[1:]]
            out.append("".join(f"{v:{precision + 6}.{precision}f} " for v in row) + "\n")
            return
        for i in range(t.shape[dim]):
            printer(idx[:dim] + (i,) + idx[dim + 1:], dim - 1)
        out.append("\n")

    printer((0, 0, 0, 0), nd - 1)
    return "".join(out)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_generated_dumps_round_trip(tmp_dir, shape, seed):
    a = np.random.default_rng(seed).normal(scale=50, size=shape).astype(np.float32)
    path = tmp_dir / "gen.txt"
    path.write_text(_af_to_string("x is:", a))
    title, got = read_af_string(path)
    want_shape = list(shape)
    while len(want_shape) > 1 and want_shape[-1] == 1:
        want_shape.pop()
    assert title == "x is:" and got.shape == tuple(want_shape)
    np.testing.assert_allclose(got, a.reshape(got.shape), rtol=0, atol=0.5e-4 + 1e-5)  # 4 decimals


def test_generator_matches_the_literal_cases():
    for name in ("column", "row", "scalar", "matrix", "3d", "4d"):
        text, a = _CASES[name]
        assert _af_to_string(text.splitlines()[0], a.astype(np.float64)) == text, name


def test_not_transposed_dump(tmp_path):
    path = tmp_path / "nt.txt"
    path.write_text("n\n[2 3 1 1]\n    0.0000     1.0000 \n    2.0000     3.0000 \n    4.0000     5.0000 \n\n")
    _, got = read_af_string(path, transpose=False)
    np.testing.assert_array_equal(got, np.arange(6).reshape((2, 3), order="F"))


@pytest.mark.parametrize("text, line, pattern", [
    ("", 1, "file is empty"),
    ("title only\n", 2, "expected dims like"),
    ("t\n31 804 1 1\n", 2, "expected dims like"),
    ("t\n[2 2 1]\n", 2, "expected dims like"),
    ("t\n[2 2 1 1]\n    1.0000     2.0000 \n    3.0000 \n\n", 4, "expected 2 values .* found 1"),
    ("t\n[2 2 1 1]\n    1.0000     2.0000 \n    3.0000     x.y \n\n", 4, "'x.y' is not a number"),
    ("t\n[2 2 1 1]\n    1.0000     2.0000 \n", 4, "file ends early"),
    ("t\n[2 2 2 1]\n    1.0000     2.0000 \n    3.0000     4.0000 \n    5.0000     6.0000 \n", 5,
     "expected a blank line"),
    ("t\n[1 2 1 1]\n    1.0000     2.0000 \nmore\n", 4, "unexpected text after the array"),
    ("t\n[0 2 1 1]\n    1.0000 \n", 3, "expected <empty>"),
])
def test_malformed_text_names_file_and_line(tmp_path, text, line, pattern):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(AfTextError, match=pattern) as e:
        read_af_string(path)
    assert isinstance(e.value, ValueError)
    assert (e.value.filename, e.value.line) == (str(path), line)
    assert str(e.value).startswith(f"{path}: line {line}: ")


def test_absurd_dims_fail_fast(tmp_path):
    path = tmp_path / "huge.txt"
    path.write_text("t\n[99999999999 99999999999 99999999999 1]\n    1.0000 \n")
    with pytest.raises(AfTextError, match="need .* lines of values; the file has only 3 lines"):
        read_af_string(path)
    path.write_text("t\n[99999999999999999999 1 1 1]\n")
    with pytest.raises(AfTextError, match="exceed ArrayFire's 64-bit dim_t"):
        read_af_string(path)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mangled_dumps_parse_or_raise_af_text_error(tmp_dir, data):
    text = _CASES[data.draw(st.sampled_from(sorted(_CASES)), label="case")][0]
    chars = list(text)
    for _ in range(data.draw(st.integers(0, 4), label="edits")):
        at = data.draw(st.integers(0, len(chars)), label="at")
        new = data.draw(st.sampled_from(["", "\n", " ", "1", "-", ".", "x", "[", "]", "9 ", "(", ","]), label="new")
        chars[at:at + data.draw(st.integers(0, 3), label="cut")] = new
    path = tmp_dir / "mangled.txt"
    path.write_text("".join(chars))
    try:
        title, a = read_af_string(path)
    except AfTextError as e:
        assert e.filename == str(path) and e.line >= 1
    else:
        assert isinstance(title, str) and a.dtype in (np.float32, np.complex64) and 1 <= a.ndim <= 4


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("dumps")
