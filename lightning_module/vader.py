"""The VADER corpora (Hutto & Gilbert, ICWSM 2014), shipped in the vaderSentiment source distribution: fetched
once with pip into a cache folder, checked, and read as :class:`~lightning_module.records.LabeledData`."""
from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lightning_module.errors import BadRows, DataError, DownloadError
from lightning_module.records import Example, LabeledData, log_read_summary, read_text, require_examples, text_lines

log = logging.getLogger("lightning_module.sources")

# --------------------------------------------------------------------------------------------------------
# The VADER corpora (Hutto & Gilbert, ICWSM 2014), shipped in the vaderSentiment source distribution
# --------------------------------------------------------------------------------------------------------

VADER_SDIST = "vaderSentiment==3.3.2"
VADER_SDIST_FILE = "vaderSentiment-3.3.2.tar.gz"
#: SHA-256 of the sdist on PyPI; a download that does not match it is refused.
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_VADER_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_VADER_INNER_FOLDER = "hutto_ICWSM_2014"

#: Data set name -> file in the archive. Each line: id <tab> mean rating (-4..+4) <tab> sentence.
VADER_CORPORA = {
    "rotten_tomatoes": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
#: Seconds the pip download may take before it is given up.
PIP_TIMEOUT_S = 600
#: The fine-grained classes: the mean rating rounded to an integer, "-4" (class 0) .. "4" (class 8).
FINE_GRAINED_NAMES = [str(rating) for rating in range(-4, 5)]


def default_cache_dir() -> Path:
    """``$TORCH_RNN_CACHE``, else ``~/.cache/torch_rnn``."""
    return Path(os.environ.get("TORCH_RNN_CACHE") or Path.home() / ".cache" / "torch_rnn")


def vader_corpus_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the corpus ``name`` lives once fetched (it may not exist yet)."""
    if name not in VADER_CORPORA:
        raise DataError(f"unknown VADER corpus {name!r}; choose one of {', '.join(VADER_CORPORA)}")
    return Path(cache_dir or default_cache_dir()) / "vader" / VADER_CORPORA[name]


def fetch_vader_corpus(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the path of the VADER corpus ``name``, downloading the corpora once if they are not cached.

    The download runs ``pip download`` of the vaderSentiment 3.3.2 source distribution (so it goes
    through the user's pip configuration: index, proxy, certificates), checks its SHA-256 and extracts
    the four corpora into ``<cache_dir>/vader/``. A cached file is never fetched again.

    Args:
        name: one of ``rotten_tomatoes``, ``tweets``, ``amazon``, ``nyt``.
        cache_dir: where to keep the files; default :func:`default_cache_dir`.

    Raises:
        DownloadError: pip failed (e.g. no package index reachable) or the download did not verify.
    """
    target = vader_corpus_path(name, cache_dir)
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="torch_rnn_vader_") as tmp:
        sdist = _pip_download_vader(Path(tmp), target)
        _extract_vader_corpora(sdist, target.parent)
    return target


def _pip_download_vader(folder: Path, target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", VADER_SDIST, "-d", str(folder)]
    advice = (f"Check the network and pip's index settings, or put {target.name} from the sdist's "
              f"additional_resources/hutto_ICWSM_2014.tar.gz into {target.parent}, or train on your own "
              "file with --data.path.")
    log.warning("downloading the VADER corpora once: python %s", " ".join(command[1:]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download of {VADER_SDIST} took over {PIP_TIMEOUT_S} s. {advice}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise DownloadError(f"could not download the VADER corpora ({VADER_SDIST} from PyPI): {reason}. {advice}")
    sdist = folder / VADER_SDIST_FILE
    if not sdist.is_file():
        raise DownloadError(f"pip download of {VADER_SDIST} did not produce {VADER_SDIST_FILE}. {advice}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != VADER_SDIST_SHA256:
        raise DownloadError(f"{VADER_SDIST_FILE} has SHA-256 {digest}, expected {VADER_SDIST_SHA256}; "
                            "refusing to use it")
    return sdist


def _extract_vader_corpora(sdist: Path, folder: Path) -> None:
    """Copy the corpora out of the archive inside the sdist; each file appears whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(_VADER_INNER_ARCHIVE).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for file_name in VADER_CORPORA.values():
            data = inner.extractfile(f"{_VADER_INNER_FOLDER}/{file_name}").read()
            partial = folder / (file_name + ".partial")
            partial.write_bytes(data)
            os.replace(partial, folder / file_name)


def _fine_grained_class(rating: float) -> int:
    """Round half away from zero (Python's round() would send 0.5 to 0 but 1.5 to 2), clip to -4..4."""
    rounded = int(math.copysign(math.floor(abs(rating) + 0.5), rating))
    return min(4, max(-4, rounded)) + 4


def read_vader(path: str | Path, fine_grained: bool = False, skip_bad_rows: bool = False) -> LabeledData:
    """Read a VADER ground-truth file (``id <tab> mean rating <tab> sentence`` per line).

    Binary (default): rating > 0 is positive (1), < 0 negative (0); sentences rated exactly 0 are neutral
    and dropped by design, and how many is logged. ``fine_grained=True`` keeps every sentence and makes
    nine classes: the rating rounded half away from zero, ``"-4"`` (class 0) .. ``"4"`` (class 8).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    bad = BadRows(skip_bad_rows)
    examples: list[Example] = []
    neutral = 0
    lines = text_lines(read_text(path))
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue  # a blank line holds no row
        fields = line.split("\t", 2)
        if len(fields) != 3:
            bad.add(where, f"expected 3 tab-separated fields (id, rating, sentence), found {len(fields)}")
            continue
        try:
            rating = float(fields[1])
        except ValueError:
            bad.add(where, f"the rating {fields[1]!r} is not a number")
            continue
        if not math.isfinite(rating):
            bad.add(where, f"the rating {fields[1]!r} is not a finite number")
            continue
        text = fields[2].strip()
        if not text:
            bad.add(where, "empty sentence")
            continue
        if fine_grained:
            examples.append(Example(text, _fine_grained_class(rating), where))
        elif rating == 0:
            neutral += 1
        else:
            examples.append(Example(text, int(rating > 0), where))
    bad.report(str(path))
    if neutral:
        log.warning("%s: dropped %d neutral sentence(s) (mean rating exactly 0) from the binary task; "
                    "use fine_grained=True to keep them", path, neutral)
    require_examples(examples, path, bad)
    log_read_summary(path, len(examples), f"{len(lines)} line(s)", bad,
                     f"{neutral} neutral sentence(s) left out of the binary task" if neutral else "")
    return LabeledData(examples, FINE_GRAINED_NAMES if fine_grained else ["negative", "positive"])
