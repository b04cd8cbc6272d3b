"""Build the demo model's sentence list from Debian's `fortunes` package.

Reads the fortune cookie files of Debian's `fortunes` / `fortunes-min`
packages (/usr/share/games/fortunes), splits them into sentences, keeps those
that normalise cleanly to lowercase a-z, apostrophe and single spaces (no
digits, acronyms, abbreviations or symbols, which a TTS engine would read
differently from the transcript) with 4..14 words, and assigns each distinct
sentence to train / val / test by a hash of its text (stable across runs and
package versions: a sentence never moves between splits).

Usage: python build_sentences.py [--out sentences.tsv]
Output: one line per sentence, "split<TAB>sentence", sorted.
"""
import argparse
import glob
import hashlib
import os
import re

FORTUNE_DIR = "/usr/share/games/fortunes"
# Files left out: programming/IRC jargon, ASCII art, non-English.
SKIP = {"ascii-art", "perl", "debian", "linux", "linuxcookie", "computers",
        "translate-me", "knghtbrd", "zippy", "startrek"}
MIN_WORDS, MAX_WORDS, MAX_CHARS = 4, 14, 85
TEST_PERCENT, VAL_PERCENT = 6, 3

ABBREV = re.compile(r"\b(mr|mrs|ms|dr|st|jr|sr|vs|etc|ie|eg|no|co|inc|ltd|"
                    r"prof|gen|col|capt|lt|sgt|rev|hon|mt|ft|oz|lb|ave)\.",
                    re.IGNORECASE)


def fortunes(path: str):
    """Yield the fortune texts of one fortune file (separated by % lines)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for block in re.split(r"^%\s*$", text, flags=re.MULTILINE):
        # Drop attribution lines ("-- Author") and everything after them.
        lines = []
        for line in block.splitlines():
            if re.match(r"^\s*(--|-- |~~|\u2014)", line):
                break
            lines.append(line)
        body = " ".join(l.strip() for l in lines).strip()
        if body:
            yield body


def normalise(sentence: str):
    """Return the sentence as lowercase a-z/'/space, or None to drop it."""
    s = sentence.replace("\u2019", "'").replace("`", "'")
    if re.search(r"[0-9@#$%&*=<>|_\[\]{}+^~\\/]", s):
        return None
    if ABBREV.search(s):
        return None
    # Acronyms and shouted words: the TTS may spell them out.
    if re.search(r"\b[A-Z]{2,}", s) or re.search(r"\b[A-Z]\.", s):
        return None
    if re.search(r"[^\x20-\x7e]", s):
        return None
    s = s.lower()
    s = re.sub(r"[-:;,.!?\"()]+", " ", s)
    words = []
    for w in s.split():
        w = w.strip("'")
        if not w:
            continue
        if not re.fullmatch(r"[a-z]+('[a-z]+)?", w):
            return None
        words.append(w)
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    out = " ".join(words)
    return out if len(out) <= MAX_CHARS else None


def split_of(sentence: str) -> str:
    """Deterministic split from the hash of the sentence."""
    h = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16) % 100
    if h < TEST_PERCENT:
        return "test"
    if h < TEST_PERCENT + VAL_PERCENT:
        return "val"
    return "train"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__) or ".", "sentences.tsv"))
    args = ap.parse_args()
    files = sorted(f for f in glob.glob(os.path.join(FORTUNE_DIR, "*"))
                   if os.path.isfile(f) and "." not in os.path.basename(f)
                   and os.path.basename(f) not in SKIP)
    if not files:
        raise SystemExit(f"no fortune files in {FORTUNE_DIR}: apt-get install -y fortunes fortunes-min")
    seen = set()
    for path in files:
        for body in fortunes(path):
            # Sentence split on terminal punctuation followed by space.
            for sent in re.split(r"(?<=[.!?])\s+", body):
                s = normalise(sent)
                if s:
                    seen.add(s)
    rows = sorted((split_of(s), s) for s in seen)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        for split, s in rows:
            f.write(f"{split}\t{s}\n")
    os.replace(tmp, args.out)
    counts = {k: sum(1 for r in rows if r[0] == k) for k in ("train", "val", "test")}
    print(f"{len(rows)} sentences from {len(files)} files -> {args.out}: {counts}")


if __name__ == "__main__":
    main()
