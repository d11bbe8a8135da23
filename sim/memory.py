"""The process's memory allocator, tuned for many short-lived temporaries."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 64 << 20  # blocks up to this size come from the heap, not fresh mappings
TRIM_THRESHOLD = 256 << 20  # free memory the heap keeps for reuse before giving some back


@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc's malloc (once per process) to keep freed memory for reuse.

    A large batch allocates and frees tens of megabytes of temporaries per solve. By default
    glibc maps blocks over 128 KiB afresh and unmaps them when they are freed, so every solve
    touches new pages, and the page faults cost about as much CPU time as the solve's own
    arithmetic (measured at 1024 vehicles: about 4 000 faults and half the time of a solve,
    docs/control.md). Raising the mmap and trim thresholds keeps freed memory in the heap: what
    PyTorch's CPU tuning guide gets by preloading jemalloc or tcmalloc, without an extra
    library. The cost: the process keeps up to ``TRIM_THRESHOLD`` of free memory.

    The same churn, smaller, is in every tick of the closed loop (numpy temporaries, the
    recorder's encoded messages), so the command line sets it for every command
    (``launch/cli.py``), and an MPC on the CPU sets it wherever it is built. No effect (and
    ``False``) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
