"""The C++ time loops (``csrc/``, ``recurrence.h`` first): built once on the machine that runs them, else Python.

The extension is compiled with ``torch.utils.cpp_extension.load`` against the installed torch, so it always
matches the torch in use; ``make test`` / ``make train`` build it right after installing the package
(``python -m torch_rnn.build_native``), and the first use builds it otherwise (about a minute, cached under
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``). When it cannot be built (no C++ compiler, say),
one warning says why and :mod:`torch_rnn.kernels` runs its Python loops instead: same results, slower.
Set ``TORCH_RNN_NATIVE=0`` to use the Python loops on purpose.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

CSRC = Path(__file__).with_name("csrc")
log = logging.getLogger(__name__)
_NAME = "torch_rnn_native"
_ops: Optional[Any] = None
_tried = False


def enabled() -> bool:
    """False when ``TORCH_RNN_NATIVE=0`` asks for the Python loops."""
    return os.environ.get("TORCH_RNN_NATIVE", "1") != "0"


def ops() -> Optional[Any]:
    """``torch.ops.torch_rnn`` with the C++ loops, building them on first use; None when unavailable."""
    global _ops, _tried
    if not enabled():
        return None
    if not _tried:
        _tried = True
        try:
            _ops = build()
        except Exception as error:  # a missing compiler or ninja, a failed compile: fall back, loudly
            warnings.warn(
                f"torch_rnn: the C++ loops could not be built, so the slower Python loops run instead "
                f"({type(error).__name__}: {_reason(error)}). "
                f"Run `python -m torch_rnn.build_native --verbose` to see the whole build log.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _ops


def _reason(error: Exception) -> str:
    """The telling line of a build error (the compiler's error, a missing program), else its last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for marker in ("not found", "error:"):  # a missing program, then the compiler's first error
        telling = [line for line in lines if marker in line.lower()]
        if telling:
            return telling[0]
    return lines[-1] if lines else ""


def _built() -> bool:
    """Whether a compiled extension already lies in torch's build directory (a changed source still rebuilds)."""
    from torch.utils import cpp_extension

    try:
        return os.path.exists(os.path.join(cpp_extension._get_build_directory(_NAME, False), f"{_NAME}.so"))
    except Exception:  # a private helper of torch: if it moves, only this notice is lost
        return True


def _stamp(flags: list[str]) -> Path:
    """Where a build of these exact sources and flags for this torch and Python records its library."""
    digest = hashlib.sha256(repr((flags, torch.__version__, sys.version, os.environ.get("TORCH_EXTENSIONS_DIR"))).encode())
    for path in sorted([*CSRC.glob("*.cpp"), *CSRC.glob("*.h")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    root = Path(os.environ.get("TORCH_RNN_CACHE") or Path.home() / ".cache" / "torch_rnn")
    return root / "native" / f"{digest.hexdigest()[:32]}.json"


def _load_recorded(stamp: Path) -> bool:
    """Load the library a stamp names if it is still the file that was built (size and time); False otherwise.

    This skips importing ``torch.utils.cpp_extension`` (and setuptools) and running ninja to find the build
    up to date: a few tenths of a second of every process that uses the loops."""
    try:
        record = json.loads(stamp.read_text(encoding="utf-8"))
        status = os.stat(record["library"])
        if [status.st_size, status.st_mtime_ns] != record["stat"]:
            return False  # rebuilt since (another checkout sharing the build folder, say): check it properly
        torch.ops.load_library(record["library"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return False
    return hasattr(torch.ops.torch_rnn, "recurrence_backward")


def _record(stamp: Path, library: str) -> None:
    try:
        status = os.stat(library)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        partial = stamp.with_name(f".{stamp.name}.{os.getpid()}")
        partial.write_text(json.dumps({"library": library, "stat": [status.st_size, status.st_mtime_ns]}),
                           encoding="utf-8")
        os.replace(partial, stamp)
    except OSError:
        pass  # no stamp: the next process checks the build with cpp_extension again


def build(verbose: bool = False) -> Any:
    """Compile (if needed) and load the extension; returns ``torch.ops.torch_rnn``. Raises when it cannot."""
    # OpenMP splits each step between torch's intra-op threads (the same libgomp torch loaded, by its
    # soname); only GCC on Linux is assumed to have it, elsewhere the loops run in one thread.
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    # A digest of the headers in the flags: a changed header rebuilds every file, as a changed source does.
    headers = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(CSRC.glob("*.h")))).hexdigest()[:16]
    flags = ["-O3", f"-DTORCH_RNN_HEADERS={headers}", *openmp]
    stamp = _stamp(flags)
    if not hasattr(torch.ops.torch_rnn, "recurrence_backward") and not verbose and _load_recorded(stamp):
        from .ops import register_native_fakes

        register_native_fakes()
        return torch.ops.torch_rnn
    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:  # the `ninja` package's binary, when this venv's bin is not on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    if not hasattr(torch.ops.torch_rnn, "recurrence_backward"):  # not yet loaded in this process
        if not verbose and not _built():
            log.warning("torch_rnn: compiling its C++ loops, once (about a minute; cached under %s)",
                        os.path.dirname(cpp_extension._get_build_directory(_NAME, False)))
        cpp_extension.load(name=_NAME, sources=[str(path) for path in sorted(CSRC.glob("*.cpp"))],
                           extra_cflags=flags, extra_ldflags=openmp, is_python_module=False, verbose=verbose)
        _record(stamp, os.path.join(cpp_extension._get_build_directory(_NAME, False), f"{_NAME}.so"))
    from .ops import register_native_fakes  # the C++ ops' fake kernels, for FakeTensorMode and opcheck

    register_native_fakes()
    return torch.ops.torch_rnn



@contextlib.contextmanager
def team_settings(straggle_ms: Optional[float] = None, probe_s: Optional[float] = None) -> Iterator[None]:
    """Within the block, the C++ loops' settings for a busy machine (``csrc/team.h``):

    - ``straggle_ms`` (default 1 ms): a team of threads split by columns that twice in one loop waits this long
      for a member (the scheduler gave its core to another process) shrinks to one thread for the rest of the
      loop; two loops split by rows whose join lost this long (and more than the loop needed) within a probe
      period do the same for the loops after them; ``float("inf")`` keeps teams whole.
    - ``probe_s`` (default 1 s): how long the loops then run in one thread before a team tries again.

    Raises:
        RuntimeError: when the C++ loops are not available (``TORCH_RNN_NATIVE=0``, or they could not be built).
        ValueError: for a negative setting.
    """
    loops = ops()
    if loops is None:
        raise RuntimeError("torch_rnn: team_settings needs the C++ loops, which are not available here")
    for name, value in (("straggle_ms", straggle_ms), ("probe_s", probe_s)):
        if value is not None and not value >= 0:
            raise ValueError(f"torch_rnn: team_settings({name}={value}): expected a value >= 0")
    limit = 2 ** 62  # nanoseconds: "never"
    straggle = -1 if straggle_ms is None else min(limit, straggle_ms * 1e6)
    probe = -1 if probe_s is None else min(limit, probe_s * 1e9)
    previous = loops.team_settings(int(straggle), int(probe))
    try:
        yield
    finally:
        loops.team_settings(*previous)
