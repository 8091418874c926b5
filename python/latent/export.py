"""``python3 -m latent.export gensim --model LDA.h5 --dictionary-stats STATS.json --output OUT
[--overwrite]``: the half of ``latent export --format gensim`` that gensim's own code must
do (docs/COMMANDS.md "latent export"). The command line counts the corpus in one
distributed pass and writes the counts to STATS.json; this module builds gensim's
Dictionary from them and writes the model with LatentDirichletAllocation.to_gensim
(LdaModel.save, atomically), so ``gensim.models.LdaModel.load(OUT)`` reads it.

STATS.json: {"vocab": [V words], "dfs": [V document frequencies], "cfs": [V term
frequencies], "num_docs": N, "num_pos": tokens, "num_nnz": nonzeros} -- gensim's
Dictionary attributes of the same names (Dictionary.from_corpus's dfs, num_docs, num_pos,
num_nnz; cfs as doc2bow counts them).

Exit status as latent's (docs/FAULTS.md "Exit codes"): 0 success, 64 gensim missing, 65 a
model file that is not LDA or statistics that do not fit it, 66 an input missing, 73 the
output exists, 74 a write failed.
"""
import argparse
import errno
import json
import sys


def _dictionary(stats, v):
    from gensim.corpora import Dictionary
    vocab, dfs, cfs = stats["vocab"], stats["dfs"], stats["cfs"]
    if not (len(vocab) == len(dfs) == len(cfs) == v):
        raise ValueError(f"the statistics have {len(vocab)} words, {len(dfs)} document and {len(cfs)} term "
                         f"frequencies but the model {v} words")
    d = Dictionary()
    d.token2id = {str(word): i for i, word in enumerate(vocab)}
    if len(d.token2id) != v:
        raise ValueError(f"the vocabulary has repeated words ({v - len(d.token2id)}): gensim's Dictionary maps each "
                         "word to one id")
    d.dfs = {i: int(f) for i, f in enumerate(dfs)}
    d.cfs = {i: int(f) for i, f in enumerate(cfs)}
    d.num_docs, d.num_pos, d.num_nnz = int(stats["num_docs"]), int(stats["num_pos"]), int(stats["num_nnz"])
    return d


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m latent.export", description=__doc__.split("\n\n")[0])
    p.add_argument("format", choices=["gensim"])
    p.add_argument("--model", required=True)
    p.add_argument("--dictionary-stats", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)

    def fail(code, message):
        print(f"latent export: error: {message}", file=sys.stderr)
        return code

    try:
        import gensim  # noqa: F401
    except ImportError as e:
        return fail(64, f"--format gensim needs gensim (Debian: python3-gensim): {e}")
    from . import LatentDirichletAllocation, load
    try:
        est = load(a.model)
    except FileNotFoundError as e:
        return fail(66, f"model {a.model}: {e}")
    except (ValueError, OSError, RuntimeError) as e:
        return fail(65, f"model {a.model}: {e}")
    if not isinstance(est, LatentDirichletAllocation):
        return fail(65, f"model {a.model}: a {type(est).__name__} model; --format gensim exports LDA models")
    try:
        with open(a.dictionary_stats, encoding="utf-8") as f:
            dictionary = _dictionary(json.load(f), est.components_.shape[1])
    except FileNotFoundError as e:
        return fail(66, f"{a.dictionary_stats}: {e}")
    except (ValueError, KeyError) as e:
        return fail(65, f"{a.dictionary_stats}: {e}")
    try:
        est.to_gensim(a.output, dictionary=dictionary, overwrite=a.overwrite)
    except FileExistsError as e:
        return fail(73, str(e))
    except OSError as e:
        return fail(74 if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else 73, f"output {a.output}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
