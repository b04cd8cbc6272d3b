"""The utterances of a corpus: a folder of audio files, or a manifest (TSV, JSONL, wav2letter list).

Manifest forms (paths relative to the manifest's folder unless absolute):

- TSV (``.tsv``): one utterance a line, tab-separated ``id, path[, transcript[, words]]``; a first line
  ``id<TAB>path...`` is a header naming the columns (``id``, ``path``, ``transcript``, ``words``, ``seed``),
  in any order.
- JSONL (``.jsonl``, ``.ndjson``): one object a line with ``id`` and ``path``, optional ``transcript``,
  ``words`` (a ``.words.json`` alignment) and ``seed``.
- wav2letter's list (``.lst``, or any other text file): ``id path duration transcript`` separated by
  white space, the transcript being the rest of the line.

A folder lists its audio files (WAV, FLAC, OGG), recursively, in sorted order; an utterance's id is its
path below the folder without the extension ("/" becomes "__"). Without a transcript or an alignment in
the manifest, ``STEM.txt`` and ``STEM.words.json`` beside the audio are used when they exist.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

#: Audio file extensions a corpus folder lists.
AUDIO_EXTS = (".wav", ".flac", ".ogg")
#: File names at the top of a corpus folder that an utterance id may not take.
RESERVED = {
    "corpus.json", "failures.csv", "utterances.csv", "report.html", "bands.csv", "bands.png", "tokens.csv",
    "tokens.png", "words.csv", "words.png", "controls.csv", "controls.png",
}
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


@dataclass
class Utterance:
    """One utterance of a corpus: its id (the run folder's name), audio path and optional references."""

    id: str
    path: str
    transcript: Optional[str] = None
    words: Optional[str] = None
    seed: Optional[int] = None

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return asdict(self)

    def words_file(self) -> Optional[Path]:
        """The word alignment: the manifest's, else STEM.words.json beside the audio if it exists."""
        if self.words:
            return Path(self.words)
        beside = Path(self.path).with_suffix(".words.json")
        return beside if beside.is_file() else None


def _resolve(base: Path, p: str) -> str:
    path = Path(os.path.expanduser(p))
    return os.fspath(path if path.is_absolute() else (base / path).resolve())


def _seed(value, where: str) -> Optional[int]:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: seed must be an integer, got {value!r}") from None


def _from_folder(folder: Path) -> list[Utterance]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [Utterance(id="__".join(p.relative_to(folder).with_suffix("").parts), path=os.fspath(p.resolve()))
            for p in files]


def _from_tsv(path: Path) -> list[Utterance]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and any(c.strip() for c in r) and not r[0].startswith("#")]
    columns = ["id", "path", "transcript", "words"]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["id", "path"]:
        columns = [c.strip().lower() for c in rows[0]]
        unknown = set(columns) - {"id", "path", "transcript", "words", "seed"}
        if unknown:
            raise ValueError(f"{path}: unknown column(s) {', '.join(sorted(unknown))} in the header; "
                             "expected id, path, transcript, words, seed")
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, 1):
        if len(row) < 2 or len(row) > len(columns):
            raise ValueError(f"{path}: row {i} has {len(row)} fields; expected {len(columns)} or fewer, at least id and path "
                             f"(tab-separated: {', '.join(columns)})")
        d = dict(zip(columns, (c.strip() for c in row)))
        out.append(_make(d, path, f"{path} row {i}"))
    return out


def _from_jsonl(path: Path) -> list[Utterance]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path} line {i}: not JSON ({exc})") from None
            if not isinstance(d, dict) or "id" not in d or "path" not in d:
                raise ValueError(f"{path} line {i}: expected an object with 'id' and 'path', got {line.strip()[:80]!r}")
            out.append(_make(d, path, f"{path} line {i}"))
    return out


def _from_lst(path: Path) -> list[Utterance]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split(None, 3)
            if len(parts) < 3:
                raise ValueError(f"{path} line {i}: expected wav2letter's 'id path duration transcript', got {line.strip()[:80]!r}")
            try:
                float(parts[2])
            except ValueError:
                raise ValueError(f"{path} line {i}: the third field (duration) must be a number, got {parts[2]!r}") from None
            d = {"id": parts[0], "path": parts[1], "transcript": parts[3].strip() if len(parts) > 3 else None}
            out.append(_make(d, path, f"{path} line {i}"))
    return out


def _make(d: dict, manifest: Path, where: str) -> Utterance:
    base = manifest.parent
    words = d.get("words") or None
    return Utterance(id=str(d["id"]).strip(), path=_resolve(base, str(d["path"])), transcript=d.get("transcript") or None,
                     words=_resolve(base, str(words)) if words else None, seed=_seed(d.get("seed"), where))


def read_list(source: os.PathLike) -> list[Utterance]:
    """The utterances a folder or manifest names, checked: ids unique and usable as folder names."""
    source = Path(source)
    if source.is_dir():
        utts = _from_folder(source)
        if not utts:
            raise ValueError(f"{source}: no audio files ({', '.join(AUDIO_EXTS)}) in this folder")
    elif source.is_file():
        ext = source.suffix.lower()
        reader = {".tsv": _from_tsv, ".jsonl": _from_jsonl, ".ndjson": _from_jsonl}.get(ext, _from_lst)
        utts = reader(source)
        if not utts:
            raise ValueError(f"{source}: the manifest lists no utterances")
    else:
        raise FileNotFoundError(f"{source}: no such folder or manifest")
    seen: dict[str, int] = {}
    for i, u in enumerate(utts):
        if not _ID.match(u.id) or u.id in RESERVED:
            raise ValueError(f"{source}: utterance id {u.id!r} cannot name a run folder; use letters, digits and _ . + - "
                             f"(not starting with . or -, not one of {', '.join(sorted(RESERVED))})")
        if u.id in seen:
            raise ValueError(f"{source}: utterance id {u.id!r} appears twice (entries {seen[u.id] + 1} and {i + 1}); ids must be unique")
        seen[u.id] = i
    return utts


def read_words(path: os.PathLike, offset_s: float = 0.0) -> list[dict]:
    """Word timings ``[{"t", "b", "d"}]`` (seconds from ``offset_s``) of a pocketsphinx-style ``.words.json``; silences dropped."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("w"), list):
        raise ValueError(f"{path}: expected a word alignment {{\"w\": [{{\"t\", \"b\", \"d\"}}, ...]}}")
    words = []
    for w in data["w"]:
        text = str(w["t"]).split("(")[0].strip().lower()
        if not text or text.startswith("<") or text.startswith("["):
            continue
        words.append({"t": text, "b": float(w["b"]) - offset_s, "d": float(w["d"])})
    return words
