"""The MapReduce experiment's data: seeded input text, the reference word
count, and the job's output compared with it.

The inputs are words of lowercase ASCII letters separated by single spaces
and newlines, so that every reasonable notion of "a word" (``str.split()``,
P4's word count mapper) gives the same counts. The reference is computed here
in plain Python; a job's output (``word<TAB>count`` lines spread over the
reducers' part files) is concatenated, sorted by word, and compared byte for
byte.
"""

import collections
import hashlib
import os
import random

VOCABULARY = 3000        # distinct words the generator draws from
WORD_LETTERS = (2, 9)    # word lengths, letters
WORDS_PER_LINE = (6, 14)


def vocabulary(seed):
    """``VOCABULARY`` distinct words, in rank order (rank 1 most frequent)."""
    rng = random.Random(f"vocabulary-{seed}")
    words, seen = [], set()
    while len(words) < VOCABULARY:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(*WORD_LETTERS)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def make_inputs(folder, files, total_bytes, seed):
    """Write ``files`` text files of about ``total_bytes`` in all into
    ``folder`` (created); words drawn with Zipf weights (1/rank), as in real
    text. Returns ``[{"name", "bytes", "sha256"}]`` in file order."""
    os.makedirs(folder, exist_ok=True)
    words = vocabulary(seed)
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    rng = random.Random(f"text-{seed}")
    out = []
    per_file = max(1, total_bytes // files)
    for i in range(files):
        lines, size = [], 0
        while size < per_file:
            line = " ".join(rng.choices(words, weights, k=rng.randint(*WORDS_PER_LINE))) + "\n"
            lines.append(line)
            size += len(line)
        data = "".join(lines).encode()
        name = f"input{i:02d}.txt"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        out.append({"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return out


def word_counts(folder):
    """Counter of the words in every regular file of ``folder``."""
    counts = collections.Counter()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                counts.update(f.read().decode("ascii").split())
    return counts


def reference_lines(counts):
    """The expected output, one ``word<TAB>count\\n`` line per word, sorted by word.
    (A tab sorts before every letter, so sorting lines sorts words.)"""
    return sorted(f"{w}\t{n}\n" for w, n in counts.items())


def output_lines(folder):
    """Every line of every regular file of the output folder, sorted; and the
    files read ``[{"name", "bytes", "lines"}]``."""
    lines, files = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        part = text.splitlines(keepends=True)
        if part and not part[-1].endswith("\n"):
            part[-1] += "\n"     # a last line without newline: compared as the line it is
        lines += part
        files.append({"name": name, "bytes": len(text), "lines": len(part)})
    return sorted(lines), files


def digest(lines):
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def compare_output(input_dir, output_dir):
    """The job's output against the reference word count of its input.

    Returns a JSON-able dict: ``ok`` (byte-identical), line counts, sha256 of
    both, the output files, and the first difference (line number, got,
    expected) when they differ."""
    ref = reference_lines(word_counts(input_dir))
    if not os.path.isdir(output_dir):
        return {"ok": False, "why": "no output folder", "reference_lines": len(ref),
                "reference_sha256": digest(ref)}
    got, files = output_lines(output_dir)
    result = {"ok": got == ref, "lines": len(got), "reference_lines": len(ref), "sha256": digest(got),
              "reference_sha256": digest(ref), "files": files}
    if got != ref:
        for i, (a, b) in enumerate(zip(got + [None] * len(ref), ref + [None] * len(got))):
            if a != b:
                result["first_difference"] = {"line": i + 1, "got": a, "expected": b}
                break
        result["why"] = "no output files" if not files else "output differs from the reference"
    return result
