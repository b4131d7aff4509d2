"""glibc's allocator, set up for a process that renders images.

A job's big buffers (the source's bytes, its decode: 9 MB for a 12 MP JPEG read at 1/2, the
intermediates) are allocated in one thread and often freed in another. With glibc's defaults
each of them is mapped afresh and handed back to the kernel when freed, so every job faults
its pixels in page by page: about 5 000 page faults per four-rendition job in `pixelflow
serve`, 8-10% of its CPU (docs/benchmarks.md). Fixed thresholds keep freed buffers in the
allocator for the next job instead. Buffers of 32 MiB and more are still mapped and returned
at once, and an arena still gives memory back once more than 64 MiB of it is free.
"""

from __future__ import annotations

import ctypes
import os

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024
# The environment variables through which an operator tunes glibc's allocator: when any is
# set, the operator's choice stands.
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_buffers() -> bool:
    """Set the thresholds above; whether they were set (False off glibc, or when the operator
    tunes the allocator through the environment)."""
    if any(name in os.environ for name in _OPERATOR_SETTINGS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success; musl's stub answers 0 and changes nothing.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
