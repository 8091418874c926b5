#!/usr/bin/python3
"""Parallel `latent import counts` (issue 20 item 4): the same bytes for any number of ranks.

For every format that is split across ranks (text as one file of documents, split by byte
range; text as a directory of documents, split by files; LDA-C, libsvm, UCI and Matrix
Market, split by byte range) and for gzipped inputs (read on rank 0), the output
directories written by 1, 2 and 3 (oversubscribed) ranks are compared file by file, byte
for byte (shards, vocabulary.txt, labels.txt, in train/ and test/ with a holdout), and the
documents are checked against a Python reading of the input. The inputs hold CRLF line
ends, empty lines (empty documents), a last line without a newline, a line far longer than
a rank's byte range (so a rank's range holds no line start), a file smaller than the
number of ranks, and shards cut inside a rank's documents (--docs-per-shard 7). A malformed
line read by rank 1 of 2 exits 65 on every rank, naming the file and the line of the whole
file, and leaves nothing behind. `import dense --format csv` with two plain inputs (a
header, CRLF, blank lines, labels), NPY, HDF5 and IDX (plain and gzipped, split by rows) give
the same bytes at 1-3 ranks, and a bad number on
rank 1 exits 65 on every rank naming file, line and field (1-based). CSV whose quoted fields
hold newlines, CRLF, doubled quotes and delimiters (with a BOM, --index-col, --usecols and
--label-column) gives the same bytes at 1-3 ranks, and a bad number after them names the
line where its record starts; the same file on standard input (--input -) at 1 and 2
ranks gives the same rows and labels. Usage: parallel_import_cli_test.py LATENT MPIEXEC (exits
77 without h5py).
"""
import gzip
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
except ImportError:
    print("h5py not available: skipped")
    sys.exit(77)

from clitest import Harness  # noqa: E402  (tests/cli/clitest.py)

H = Harness(sys.argv[1], sys.argv[2])
check, run = H.check, H.run
RANKS = (1, 2, 3)


def tree_hashes(directory):
    """{relative path: sha256 of the bytes} of every file below `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def read_docs(directory):
    """Documents as sorted (word, count) lists, in dataset order, with labels if any."""
    docs, labels = [], []
    for name in sorted(n for n in os.listdir(directory) if n.endswith(".h5")):
        with h5py.File(os.path.join(directory, name), "r") as f:
            indptr, indices, data = f["indptr"][:], f["indices"][:], f["data"][:]
            if "labels" in f:
                labels += [int(x) for x in f["labels"][:]]
        for d in range(len(indptr) - 1):
            b, e = indptr[d], indptr[d + 1]
            docs.append([(int(w), int(c)) for w, c in zip(indices[b:e], data[b:e])])
    with open(os.path.join(directory, "vocabulary.txt")) as f:
        vocab = f.read().split("\n")[:-1]
    return docs, vocab, labels


def same_for_any_ranks(what, args, work, expect_files=None):
    """Imports at 1, 2 and 3 ranks; checks every file is the same bytes. Returns the 1-rank output."""
    hashes = {}
    for n in RANKS:
        out = os.path.join(work, f"{what}-n{n}")
        r = run(["import", "counts"] + args + ["--output", out], ranks=n)
        if r.returncode != 0:
            check(False, f"{what}: import at {n} ranks")
            return None
        hashes[n] = tree_hashes(out)
    base = hashes[RANKS[0]]
    for n in RANKS[1:]:
        differ = sorted(k for k in set(base) | set(hashes[n]) if base.get(k) != hashes[n].get(k))
        check(not differ, f"{what}: {len(base)} files identical at 1 and {n} ranks" + (f" (differ: {differ})" if differ else ""))
    if expect_files is not None:
        check(expect_files(base), f"{what}: expected files present ({sorted(base)[:6]}...)")
    leftovers = [x for x in os.listdir(work) if "tmp-" in x]
    check(not leftovers, f"{what}: no temporaries left ({leftovers})")
    return os.path.join(work, f"{what}-n1")


def tokenize(line):
    return re.findall(r"(?u)\b\w\w+\b", line.lower())


def expected_text_docs(lines, vocab):
    ids = {w: i for i, w in enumerate(vocab)}
    out = []
    for line in lines:
        counts = {}
        for w in tokenize(line):
            if w in ids:
                counts[ids[w]] = counts.get(ids[w], 0) + 1
        out.append(sorted(counts.items()))
    return out


def main():
    work = tempfile.mkdtemp(prefix="parallel-import-")
    try:
        rng = random.Random(7)
        words = [f"w{i}" for i in range(400)] + ["Alpha", "beta", "GAMMA", "delta_x", "ü_ber"]

        # --- Text, one document per line ------------------------------------------------
        lines = []
        for i in range(1500):
            n = rng.choice([0, 0, 1, 3, 10, 40])
            lines.append(" ".join(rng.choice(words) for _ in range(n)))
        lines[700] = " ".join(rng.choice(words) for _ in range(60000))  # longer than a rank's range
        lines[-1] = "the last line, without a newline"
        raw = ""
        for i, line in enumerate(lines):
            raw += line + ("\r\n" if i % 5 == 0 else "\n")
        raw = raw[:-1]  # the last line has no newline
        text = os.path.join(work, "docs.txt")
        with open(text, "w") as f:
            f.write(raw)
        for name, extra in (("text", []), ("text-pruned", ["--min-df", "3", "--max-df", "0.5", "--max-features", "150"]),
                            ("text-holdout", ["--holdout-fraction", "0.3", "--seed", "5"])):
            out = same_for_any_ranks(name, ["--format", "text", "--input", text, "--docs-per-shard", "7"] + extra, work)
            if out and name == "text":
                docs, vocab, _ = read_docs(out)
                check(docs == expected_text_docs(lines, vocab), "text: documents match a Python tokenisation")
                check(len(docs) == len(lines), f"text: {len(docs)} documents = {len(lines)} lines")
        # The long line spans the middle of the file: with 3 ranks the middle rank's range
        # holds no line start. A file shorter than the number of ranks:
        tiny = os.path.join(work, "tiny.txt")
        with open(tiny, "w") as f:
            f.write("ab\n")
        same_for_any_ranks("text-tiny", ["--format", "text", "--input", tiny], work)
        # Gzipped: read on rank 0.
        with open(text, "rb") as f, gzip.open(os.path.join(work, "docs.txt.gz"), "wb") as g:
            g.write(f.read())
        out = same_for_any_ranks("text-gz", ["--format", "text", "--input", os.path.join(work, "docs.txt.gz"),
                                             "--docs-per-shard", "7"], work)
        if out:
            check(tree_hashes(out) == tree_hashes(os.path.join(work, "text-n1")), "text-gz: the same bytes as the plain file")
        # A fixed vocabulary.
        vocab_file = os.path.join(work, "vocab.txt")
        with open(vocab_file, "w") as f:
            f.write("\n".join(["w1", "w5", "alpha", "zzz", "w399"]) + "\n")
        same_for_any_ranks("text-vocab", ["--format", "text", "--input", text, "--vocab", vocab_file,
                                          "--docs-per-shard", "7"], work)

        # --- Text, a directory of documents (with labels) -----------------------------------
        corpus = os.path.join(work, "corpus")
        os.mkdir(corpus)
        cats = []
        for i in range(23):
            name = f"doc{i:03d}"
            with open(os.path.join(corpus, name), "w") as f:
                if i != 4:  # doc004 is empty
                    f.write("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
                                      for _ in range(rng.randint(1, 4))))
            cats.append(f"{name} {rng.choice(['news', 'fiction', 'science'])}")
        with open(os.path.join(work, "cats.txt"), "w") as f:
            f.write("\n".join(cats) + "\n")
        out = same_for_any_ranks("text-dir", ["--format", "text", "--input", corpus, "--labels",
                                              os.path.join(work, "cats.txt"), "--docs-per-shard", "4",
                                              "--holdout-fraction", "0.25"], work,
                                 lambda h: "train/labels.txt" in h and "test/vocabulary.txt" in h)
        # Fewer files than ranks: rank 2 gets none.
        small = os.path.join(work, "small")
        os.mkdir(small)
        for i in range(2):
            with open(os.path.join(small, f"f{i}"), "w") as f:
                f.write("hello world hello\n")
        same_for_any_ranks("text-dir-small", ["--format", "text", "--input", small], work)

        # --- LDA-C and libsvm ---------------------------------------------------------------
        ldac_lines = []
        for i in range(900):
            pairs = sorted(rng.sample(range(300), rng.choice([0, 1, 5, 20])))
            ldac_lines.append(f"{len(pairs)} " + " ".join(f"{t}:{rng.randint(1, 4)}" for t in pairs))
        ldac_lines[400] = "5000 " + " ".join(f"{t}:1" for t in range(5000))
        ldac = os.path.join(work, "corpus.ldac")
        with open(ldac, "w") as f:
            f.write("\r\n".join(ldac_lines))  # CRLF, no final newline
        out = same_for_any_ranks("ldac", ["--format", "ldac", "--input", ldac, "--docs-per-shard", "7"], work)
        if out:
            docs, vocab, _ = read_docs(out)
            expect = [[(int(p.split(":")[0]), int(p.split(":")[1])) for p in line.split()[1:]] for line in ldac_lines]
            check(docs == expect, "ldac: documents match the input")

        svm_lines = []
        for i in range(900):
            feats = sorted(rng.sample(range(0, 250), rng.choice([0, 2, 8])))
            svm_lines.append(f"{i % 4} " + " ".join(f"{t}:{rng.randint(1, 3)}" for t in feats)
                             + (" # a comment" if i % 11 == 0 else ""))
            if i % 97 == 0:
                svm_lines.append("")  # blank lines are skipped
                svm_lines.append("# comment only")
        svm = os.path.join(work, "corpus.svm")
        with open(svm, "w") as f:
            f.write("\n".join(svm_lines) + "\n")
        out = same_for_any_ranks("libsvm", ["--format", "libsvm", "--input", svm, "--docs-per-shard", "7",
                                            "--holdout-fraction", "0.2"], work)

        # --- UCI and Matrix Market: entry lines cut by bytes, a document cut between ranks
        # going to the later one (document 150 is long enough to span a whole rank's range).
        uci = os.path.join(work, "docword.toy.txt")
        entries = []
        for d in range(1, 301):
            if d % 6 == 0 or d == 300:
                continue  # empty documents, the last one too
            k = 2000 if d == 150 else rng.randint(1, 12)
            entries += [(d, w, rng.randint(0, 5)) for w in sorted(rng.sample(range(1, 2501), k))]
        with open(uci, "w") as f:
            f.write(f"300\n2500\n{len(entries)}\n" + "".join(f"{d} {w} {c}\n" for d, w, c in entries))
        with open(os.path.join(work, "vocab.toy.txt"), "w") as f:
            f.write("".join(f"word{i}\n" for i in range(2500)))
        out = same_for_any_ranks("uci", ["--format", "uci", "--input", uci, "--docs-per-shard", "7"], work)
        if out:
            docs, _, _ = read_docs(out)
            expect = [[] for _ in range(300)]
            for d, w, c in entries:
                if c > 0:
                    expect[d - 1].append((w - 1, c))
            check(docs == expect, "uci: documents match the input (empty ones, zeros dropped)")
        with open(uci, "rb") as f, gzip.open(os.path.join(work, "docword.gz.txt.gz"), "wb") as g:
            g.write(f.read())
        shutil.copy(os.path.join(work, "vocab.toy.txt"), os.path.join(work, "vocab.gz.txt"))
        out = same_for_any_ranks("uci-gz", ["--format", "uci", "--input", os.path.join(work, "docword.gz.txt.gz"),
                                            "--docs-per-shard", "7"], work)
        if out:
            check(tree_hashes(out) == tree_hashes(os.path.join(work, "uci-n1")), "uci-gz: the same bytes as the plain file")
        mm = os.path.join(work, "corpus.mm")
        with open(mm, "w") as f:
            f.write("%%MatrixMarket matrix coordinate integer general\r\n% a comment\r\n"
                    f"300 2500 {len(entries)}\r\n" + "".join(f"{d} {w} {c}\r\n" for d, w, c in entries))
        out = same_for_any_ranks("mm", ["--format", "mm", "--input", mm, "--docs-per-shard", "7"], work)
        # Entries out of order across a cut and a wrong entry count, at 2 ranks: exit 65.
        disorder = os.path.join(work, "docword.bad.txt")
        shuffled = entries[: len(entries) // 2] + [(1, 1, 1)] + entries[len(entries) // 2:]
        with open(disorder, "w") as f:
            f.write(f"300\n2500\n{len(shuffled)}\n" + "".join(f"{d} {w} {c}\n" for d, w, c in shuffled))
        r = run(["import", "counts", "--format", "uci", "--input", disorder, "--vocab",
                 os.path.join(work, "vocab.toy.txt"), "--output", os.path.join(work, "bad-uci")], ranks=2, expect=65)
        check("after document" in r.stderr + r.stdout and "line" in r.stderr + r.stdout,
              "uci: entries out of order across ranks are refused naming the line")
        short = os.path.join(work, "docword.short.txt")
        with open(short, "w") as f:
            f.write(f"300\n2500\n{len(entries) + 5}\n" + "".join(f"{d} {w} {c}\n" for d, w, c in entries))
        r = run(["import", "counts", "--format", "uci", "--input", short, "--vocab",
                 os.path.join(work, "vocab.toy.txt"), "--output", os.path.join(work, "bad-uci")], ranks=3, expect=65)
        check("truncated" in r.stderr + r.stdout, "uci: a wrong entry count is refused at 3 ranks")
        check(not [x for x in os.listdir(work) if x.startswith("bad-uci")], "uci: nothing left behind")

        # --- Dense CSV (two inputs as one byte space; a header; labels) --------------------
        import numpy as np
        a = np.round(np.random.default_rng(3).normal(size=(700, 4)), 6)
        csv_a, csv_b = os.path.join(work, "a.csv"), os.path.join(work, "b.csv")
        with open(csv_a, "w") as f:
            f.write("p,q,r,s\r\n")
            for i in range(500):
                f.write(",".join(repr(float(v)) for v in a[i]) + "\r\n" + ("\n" if i % 60 == 0 else ""))
        with open(csv_b, "w") as f:
            f.write("\n".join(",".join(repr(float(v)) for v in a[i]) for i in range(500, 700)))  # no final newline
        labels_file = os.path.join(work, "labels.txt")
        with open(labels_file, "w") as f:
            f.write("".join(f"{i % 7}\n" for i in range(700)))
        hashes = {}
        for n in RANKS:
            out = os.path.join(work, f"dense-n{n}")
            run(["import", "dense", "--format", "csv", "--input", csv_a, csv_b, "--labels", labels_file,
                 "--dtype", "float64", "--rows-per-shard", "64", "--output", out], ranks=n)
            hashes[n] = tree_hashes(out)
        for n in RANKS[1:]:
            check(hashes[n] == hashes[1] and len(hashes[1]) == 11, f"dense csv: {len(hashes[1])} files identical at 1 and {n} ranks")
        got, lab = [], []
        for name in sorted(os.listdir(os.path.join(work, "dense-n1"))):
            with h5py.File(os.path.join(work, "dense-n1", name), "r") as f:
                got.append(f["data"][:])
                lab.append(f["labels"][:])
        check(np.array_equal(np.concatenate(got), a), "dense csv: rows match the input")
        check(np.array_equal(np.concatenate(lab), np.arange(700) % 7), "dense csv: labels match")
        # NPY, HDF5 and IDX (gzipped too) are split by rows: the same bytes too.
        np.save(os.path.join(work, "a.npy"), a)
        img = np.random.default_rng(4).integers(0, 256, size=(333, 5, 3), dtype=np.uint8)
        idx_bytes = bytes([0, 0, 8, 3]) + b"".join(int(x).to_bytes(4, "big") for x in img.shape) + img.tobytes()
        with open(os.path.join(work, "a.idx"), "wb") as f:
            f.write(idx_bytes)
        with gzip.open(os.path.join(work, "b.idx.gz"), "wb") as f:
            f.write(idx_bytes)
        with h5py.File(os.path.join(work, "a.h5"), "w") as f:
            f["x"] = a
        for fmt_name, extra in (("npy", [os.path.join(work, "a.npy"), os.path.join(work, "a.npy")]),
                                ("hdf5", [os.path.join(work, "a.h5"), "--dataset", "x"]),
                                ("idx", [os.path.join(work, "a.idx"), os.path.join(work, "b.idx.gz")])):
            hashes = {}
            for n in RANKS:
                out = os.path.join(work, f"dense-{fmt_name}-n{n}")
                run(["import", "dense", "--format", fmt_name, "--input"] + extra + ["--rows-per-shard", "64", "--output", out],
                    ranks=n)
                hashes[n] = tree_hashes(out)
            check(hashes[1] == hashes[2] == hashes[3] and len(hashes[1]) in (11, 22),
                  f"dense {fmt_name}: {len(hashes[1])} files identical at 1-3 ranks")
        got = []
        for name in sorted(os.listdir(os.path.join(work, "dense-idx-n3"))):
            with h5py.File(os.path.join(work, "dense-idx-n3", name), "r") as f:
                got.append(f["data"][:])
        want = np.concatenate([img.reshape(333, 15)] * 2).astype(np.float32) / np.float32(255)
        check(np.allclose(np.concatenate(got), want, atol=1e-6), "dense idx: rows match at 3 ranks")
        bad_csv = os.path.join(work, "bad.csv")
        with open(csv_a) as f:
            rows = f.read().split("\n")
        rows[450] = "1,2,oops,4\r"
        with open(bad_csv, "w") as f:
            f.write("\n".join(rows))
        codes_csv = os.path.join(work, "codes-csv")
        r = subprocess.run([H.mpiexec, "--oversubscribe", "-n", "2", "sh", "-c", f'"$0" "$@"; echo $? >> {codes_csv}',
                            H.latent, "import", "dense", "--format", "csv", "--input", bad_csv, "--output",
                            os.path.join(work, "bad-dense")], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
        with open(codes_csv) as f:
            per_rank = f.read().split()
        check(per_rank == ["65", "65"], f"dense bad number: every rank exits 65 ({per_rank})")
        check(f"input {bad_csv}, line 451, field 3: 'oops' is not a number" in r.stdout + r.stderr,
              "dense bad number: the message names file, line and field")
        check(not [x for x in os.listdir(work) if x.startswith("bad-dense")], "dense bad number: nothing left behind")

        # --- Dense CSV with quoted newlines (issue 22 item 4): a line start may be inside
        # a record, so rank 0 moves the cuts to record starts; the same bytes at 1-3 ranks.
        q = np.round(np.random.default_rng(5).normal(size=(400, 2)), 6)
        quoted = os.path.join(work, "quoted.csv")
        record_line, line_no = [], 2
        with open(quoted, "w", newline="") as f:
            f.write('\ufeffid,"note, free text",x,y,label\r\n')
            for i in range(400):
                inner = 10 + i % 7  # newlines inside the note: most line starts are inside a record
                note = f'"row {i} says ""hi"",\r\n' + "\n".join(["more, lines"] * inner) + '"' if i % 5 else f"plain {i}"
                record_line.append(line_no)
                line_no += 1 + (inner if i % 5 else 0)
                f.write(f"r{i},{note},{q[i, 0]!r},{q[i, 1]!r},{i % 5}\r\n")
        # The test means something only if the byte cuts at 2 and 3 ranks, moved to the
        # next line start, fall inside a record (where a line-start split would break).
        with open(quoted, "rb") as f:
            raw = f.read()
        starts, inside, at = {0}, False, 0
        for piece in raw.split(b"\n")[:-1]:
            inside ^= piece.count(b'"') % 2 == 1
            at += len(piece) + 1
            if not inside:
                starts.add(at)
        cuts = [len(raw) // n * r + len(raw) % n * r // n for n in (2, 3) for r in range(1, n)]
        check(all(raw.index(b"\n", c - 1) + 1 not in starts for c in cuts),
              "dense csv, quoted newlines: the byte cuts at 2 and 3 ranks fall inside quoted fields")
        hashes = {}
        for n in RANKS:
            out = os.path.join(work, f"quoted-n{n}")
            run(["import", "dense", "--format", "csv", "--input", quoted, "--index-col", "id", "--usecols", "x,y",
                 "--label-column", "label", "--dtype", "float64", "--rows-per-shard", "64", "--output", out], ranks=n)
            hashes[n] = tree_hashes(out)
        check(hashes[1] == hashes[2] == hashes[3] and len(hashes[1]) == 7,
              f"dense csv, quoted newlines: {len(hashes[1])} files identical at 1-3 ranks")
        got, lab = [], []
        for name in sorted(os.listdir(os.path.join(work, "quoted-n3"))):
            with h5py.File(os.path.join(work, "quoted-n3", name), "r") as f:
                got.append(f["data"][:])
                lab.append(f["labels"][:])
        check(np.array_equal(np.concatenate(got), q), "dense csv, quoted newlines: rows match the input")
        check(np.array_equal(np.concatenate(lab), np.arange(400) % 5), "dense csv, quoted newlines: labels match")
        with open(quoted, newline="") as f:
            text = f.read()
        bad_row = 350
        text = text.replace(f",{q[bad_row, 1]!r},{bad_row % 5}\r\n", f",x{q[bad_row, 1]!r},{bad_row % 5}\r\n", 1)
        bad_quoted = os.path.join(work, "bad-quoted.csv")
        with open(bad_quoted, "w", newline="") as f:
            f.write(text)
        r = run(["import", "dense", "--format", "csv", "--input", bad_quoted, "--index-col", "0", "--usecols", "x,y",
                 "--output", os.path.join(work, "bad-quoted")], ranks=2, expect=65)
        check(f"input {bad_quoted}, line {record_line[bad_row]}, field 4: 'x{q[bad_row, 1]!r}' is not a number"
              in r.stdout + r.stderr, f"dense csv, quoted newlines: a bad number at 2 ranks names the record's line "
              f"{record_line[bad_row]} and field 4")
        # --input -: standard input, at 1 rank and under mpirun (rank 0 reads it).
        for n in (1, 2):
            out = os.path.join(work, f"stdin-n{n}")
            cmd = ([H.mpiexec, "--oversubscribe", "-n", str(n)] if n > 1 else []) + [
                H.latent, "import", "dense", "--format", "csv", "--input", "-", "--index-col", "id", "--usecols", "x,y",
                "--label-column", "label", "--dtype", "float64", "--rows-per-shard", "64", "--output", out]
            with open(quoted, "rb") as f:
                r = subprocess.run(cmd, stdin=f, capture_output=True, text=True, timeout=300,
                                   env=dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"))
            check(r.returncode == 0, f"dense csv from standard input at {n} rank(s): exit {r.returncode} {r.stderr[-300:]}")
            if r.returncode == 0:
                got, lab = [], []
                for name in sorted(os.listdir(out)):
                    with h5py.File(os.path.join(out, name), "r") as f:
                        got.append(f["data"][:])
                        lab.append(f["labels"][:])
                check(np.array_equal(np.concatenate(got), q) and np.array_equal(np.concatenate(lab), np.arange(400) % 5),
                      f"dense csv from standard input at {n} rank(s): rows and labels match")

        # --- A bad line read by rank 1 of 2 -------------------------------------------------
        bad_lines = list(ldac_lines)
        bad_lines[850] = "2 3:1 x:2"
        bad = os.path.join(work, "bad.ldac")
        with open(bad, "w") as f:
            f.write("\n".join(bad_lines) + "\n")
        codes = os.path.join(work, "codes")
        cmd = [H.mpiexec, "--oversubscribe", "-n", "2", "sh", "-c",
               f'"$0" "$@"; echo $? >> {codes}', H.latent, "import", "counts", "--format", "ldac", "--input", bad,
               "--output", os.path.join(work, "bad-out")]
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        with open(codes) as f:
            per_rank = f.read().split()
        check(per_rank == ["65", "65"], f"bad line: every rank exits 65 ({per_rank})")
        message = r.stdout + r.stderr
        check(f"input {bad}, line 851: expected term:count" in message,
              "bad line: the message names the file and the line of the whole file")
        check("rank 1:" in message, "bad line: the message names rank 1, which read it")
        left = [x for x in os.listdir(work) if x.startswith("bad-out")]
        check(not left, f"bad line: nothing left behind ({left})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    H.finish()


if __name__ == "__main__":
    main()
