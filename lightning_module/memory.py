"""Checks that a setting fits in memory before anything is allocated for it: one line instead of a crash.

The estimate is compared with the memory available now (Linux: ``MemAvailable`` of ``/proc/meminfo``; elsewhere
the free physical pages); where neither can be read, nothing is checked.
"""
from __future__ import annotations

import os
from typing import Optional

from lightning_module.errors import MemoryLimitError


def available_bytes() -> Optional[int]:
    """Bytes of memory available to a new allocation now, or None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(what: str, needed_bytes: float, advice: str) -> None:
    """Raise :class:`MemoryLimitError` (``"<what> needs about X GB of memory but Y GB are available: <advice>"``)
    when ``needed_bytes`` is more than the memory available now.

    Args:
        what: the setting or input, as the user gave it (``--model.embedding_dim 4096 with 2,000,000 words``).
        needed_bytes: the estimate, in bytes.
        advice: what to change.
    """
    available = available_bytes()
    if available is not None and needed_bytes > available:
        raise MemoryLimitError(f"{what} needs about {needed_bytes / 2**30:,.1f} GB of memory but "
                               f"{available / 2**30:,.1f} GB are available: {advice}")
