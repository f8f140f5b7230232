"""Process-level runtime settings that make the many mid-sized temporaries of axhw's hot paths cheap.

Why: a training step of AxTrain-pas creates dozens of 0.1-1 MB tensors (codes, transforms, flip masks).
glibc serves blocks above its mmap threshold (128 KiB at start) with fresh ``mmap`` pages and returns freed
heap tops to the OS above its trim threshold, so every such tensor pays page faults on first touch. Measured
on MNIST-MLP (2 threads, this project's CI machine kind): one training-mode hardware forward of the 784x128
layer (K2, 660 mV, batch 128) took 3.0-4.0 ms with glibc's defaults and 1.6 ms with the settings below.
PyTorch's CPU performance guide recommends the same remedy (jemalloc/tcmalloc, or glibc's tunables).

:func:`tune_allocator` is called by the ``axhw`` CLI, the sweep workers and the benchmarks; library users
may call it themselves. It only changes glibc's thresholds (no effect elsewhere, nothing to undo for
correctness): freed memory up to ``trim_mb`` stays mapped in the process for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); larger is refused


@functools.cache
def tune_allocator(trim_mb: int = 256) -> bool:
    """Raise glibc's mmap threshold to 32 MiB and its trim threshold to ``trim_mb``; True if applied.

    Returns False (and changes nothing) where the C library is not glibc. Idempotent.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))
