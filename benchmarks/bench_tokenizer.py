"""The tokenizer against NLTK's ``TreebankWordTokenizer`` on a large corpus, timed side by side.

Synthetic reviews (:mod:`synthetic_reviews`, ``--rows``, default a million) are tokenized the way a data set is
(:meth:`lightning_module.tokenizer.Tokenizer.encode_many` on blocks of ``corpus.BLOCK_ROWS`` sentences sharing one
token table). After every block NLTK tokenizes every ``--nltk-every``-th sentence of it, so the two are timed in
interleaved rounds and a busy machine slows both alike; NLTK's time per sentence does not depend on what came
before. ``--before FILE`` also times another version of ``tokenizer.py`` (e.g. ``git show
main:lightning_module/tokenizer.py > /tmp/tokenizer_main.py``) in the same rounds. The sampled sentences' tokens
are compared with NLTK's.

    python benchmarks/bench_tokenizer.py                       # a million reviews
    python benchmarks/bench_tokenizer.py --rows 100000 --json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from synthetic_reviews import write_reviews  # noqa: E402


def _module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(texts: list[str], nltk_every: int = 25, before: Optional[Path] = None,
            block_rows: Optional[int] = None) -> dict[str, Any]:
    """Microseconds per sentence of ours (and ``before``'s) over all ``texts``, and of NLTK over every
    ``nltk_every``-th one, timed block by block in turn; ``ratio`` is NLTK's time per sentence over ours."""
    from nltk.tokenize import TreebankWordTokenizer

    from lightning_module.corpus import BLOCK_ROWS
    from lightning_module.tokenizer import Tokenizer, TokenTable

    block_rows = block_rows or BLOCK_ROWS
    contenders = {"ours": (Tokenizer(), TokenTable())}
    if before is not None:
        old = _module(before, "tokenizer_before")
        contenders["before"] = (old.Tokenizer(), old.TokenTable())
    seconds = dict.fromkeys(contenders, 0.0)
    treebank, nltk_seconds, nltk_count, same = TreebankWordTokenizer(), 0.0, 0, True
    for start in range(0, len(texts), block_rows):
        block = texts[start:start + block_rows]
        for name, (tokenizer, table) in contenders.items():
            began = time.perf_counter()
            ids, lengths = tokenizer.encode_many(block, table)
            seconds[name] += time.perf_counter() - began
            if name == "ours":
                ends = lengths.cumsum()
                ours = [[table.words[i] for i in ids[ends[k] - lengths[k]: ends[k]]]
                        for k in range(0, len(block), nltk_every)]
        sample = [text.lower() for text in block[::nltk_every]]
        began = time.perf_counter()
        reference = [treebank.tokenize(text) for text in sample]
        nltk_seconds += time.perf_counter() - began
        nltk_count += len(sample)
        same = same and reference == ours
    result = {"sentences": len(texts), "block_rows": block_rows, "nltk_sentences": nltk_count,
              "nltk_us": nltk_seconds / nltk_count * 1e6, "same_tokens": same}
    for name, total in seconds.items():
        result[f"{name}_us"] = total / len(texts) * 1e6
        result[f"{name}_ratio"] = result["nltk_us"] / result[f"{name}_us"]
    result["load_average"] = os.getloadavg()
    return result


def read_texts(path: Path, rows: int) -> list[str]:
    with path.open(encoding="utf-8") as file:
        return [line.rstrip("\n").split("\t", 1)[1] for _, line in zip(range(rows), file)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="a label<TAB>text file to read instead of writing synthetic reviews")
    parser.add_argument("--nltk-every", type=int, default=25, help="NLTK tokenizes every n-th sentence")
    parser.add_argument("--block-rows", type=int, help="sentences per encode_many call (default corpus.BLOCK_ROWS)")
    parser.add_argument("--before", type=Path, help="another tokenizer.py to time in the same rounds")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_") as folder:
        data = options.data
        if data is None:
            data = Path(folder) / "reviews.tsv"
            write_reviews(data, options.rows)
        texts = read_texts(data, options.rows)
    result = compare(texts, options.nltk_every, options.before, options.block_rows)
    if options.json:
        print(json.dumps(result, indent=2))
        return
    before = (f", before {result['before_us']:.1f} us ({result['before_ratio']:.1f}x)" if "before_us" in result else "")
    print(f"{result['sentences']:,} sentences in blocks of {result['block_rows']:,}: NLTK {result['nltk_us']:.1f} us "
          f"a sentence (on {result['nltk_sentences']:,}), ours {result['ours_us']:.1f} us ({result['ours_ratio']:.1f}x)"
          f"{before}; same tokens: {result['same_tokens']}; load average "
          + ", ".join(f"{value:.2f}" for value in result["load_average"]))


if __name__ == "__main__":
    main()
