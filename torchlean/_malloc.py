"""Keep freed heap memory for reuse instead of handing it back to the kernel (glibc only).

Bound propagation allocates and frees the same few hundred-kilobyte numpy temporaries thousands of
times a second. glibc's default trims the heap top on every such free and grows it again on the next
allocation, so each temporary costs fresh zeroed pages: on ACAS Xu this was 1.4 million minor page
faults and a third of the run in the kernel. A 64 MiB top pad keeps that memory mapped. Measured on
1_1/prop_6 (2 cores): search 6.9 -> 5.2 s, replay 2.4 -> 1.5 s (bench/README.md). Only the CLIs and
benchmarks call this: a library should not change its host process's allocator on import.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TOP_PAD = -2  # glibc <malloc.h>
PAD = 64 << 20


def keep_freed_memory(pad: int = PAD) -> bool:
    """Ask glibc to keep ``pad`` bytes at the heap top when trimming; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_TOP_PAD, pad) == 1


@contextmanager
def loading() -> Iterator[None]:
    """No cyclic garbage collection while a network is read and lowered, then every object made
    so far moved out of the collector's view (``gc.freeze``). Lowering builds 10^5-10^6 exact
    weights, forms and dicts that live until the command exits; each full collection on the way
    walked all of them again (a third of lowering an mnistfc net), and every later one would too.
    Reference counting still frees what is dropped; only cycles made before the freeze are kept.
    For the one-instance CLIs, like ``keep_freed_memory``."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()
