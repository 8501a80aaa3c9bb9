"""Process-wide settings for fast CPU work.

glibc's ``malloc`` hands large blocks (above a threshold that it moves by
itself, 128 KiB at the start) to the kernel with ``mmap`` and gives them back
with ``munmap`` when they are freed, and it returns the free memory at the top
of its heap to the kernel once there is more of it than another threshold.
Every tensor a torch op allocates on the CPU goes through ``malloc``, so a
loop that allocates and frees the same few megabytes per step (a decoder, a
training step) can fault every page of them in again at each step: the
kernel zeroes each 4 KiB page on first touch.  How often that happens
depends on the order in which sizes came, so it differs from process to
process.  Fixing both thresholds keeps the freed blocks in the process for
the next step: ``benchmarks/allocator.py`` measures the page faults and the
G2P decoding speed with and without (``docs/results/allocator.md``).

The ``seqlab`` command calls :func:`keep_freed_memory` at start; library
users call it themselves.  ``SEQLAB_MALLOC=default`` leaves glibc's own
settings alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["keep_freed_memory", "MALLOC_ENV"]

MALLOC_ENV = "SEQLAB_MALLOC"

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX): blocks above it
# still go to the kernel, so a one-off huge tensor is still given back.
MMAP_THRESHOLD = 32 << 20
# Free memory at the top of the heap is given back to the kernel above this much.
TRIM_THRESHOLD = 512 << 20


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed blocks of up to 32 MiB for reuse (see the module docstring).

    Fixes ``M_MMAP_THRESHOLD`` at 32 MiB and ``M_TRIM_THRESHOLD`` at
    512 MiB, for the whole process.  The cost is memory: up to about
    512 MiB that the process has freed stays mapped to it.  Returns whether
    the settings were applied: False without glibc (macOS, musl, Windows) or
    with ``SEQLAB_MALLOC=default``.
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
