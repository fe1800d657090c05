"""Process-wide memory allocator settings (call from entry points only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Have glibc serve allocations below ``threshold`` from its heap and keep freed memory.

    PyTorch's CPU allocator has no cache, and glibc hands every allocation above 32 MB to a fresh
    ``mmap`` that is returned on free, so each large feature map faults its pages in again, one
    4 KiB page at a time. For a resnet_9blocks forward pass at 1024x1024 on the 2-core test VM
    that was 1.3 million page faults and about 2 s of system time per image; with this setting
    about 0.2 million and 0.35 s (docs/inference.md). The cost: memory freed after a large image
    stays with the process. Returns False where glibc's ``mallopt`` is not available.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(threshold))) and bool(mallopt(_M_TRIM_THRESHOLD, int(threshold) * 4))
    log.debug("glibc mallopt: mmap threshold %d bytes: %s", threshold, ok)
    return ok
