"""Memory of this process, measured the same way on Linux, macOS and Windows (chapters 5, 6 and 8).

Three numbers, all in **bytes** (divide by ``1e6`` for MB, by ``2**20`` for MiB):

* :func:`rss_bytes`: the resident set size now (the physical memory the process holds), from psutil.
* :func:`peak_rss_bytes`: the largest resident set size the process has had since it started, as the
  operating system records it. Each system states it in its own unit, converted here:

  ========== ============================================= ========================
  system     source                                        unit reported
  ========== ============================================= ========================
  Linux      ``VmHWM`` in ``/proc/self/status``              KiB (``ru_maxrss`` without /proc)
  macOS      ``resource.getrusage(...).ru_maxrss``         bytes
  Windows    ``psutil.Process().memory_info().peak_wset``  bytes
  other Unix ``resource.getrusage(...).ru_maxrss``         KiB (as BSD)
  ========== ============================================= ========================

  It is ``None`` where the system keeps no such record. On Linux ``ru_maxrss`` is not used when ``VmHWM``
  can be read: the kernel carries ``ru_maxrss`` across ``exec``, so a process started from a large one
  (a script run with ``subprocess`` from a notebook holding 2 GB) would report its parent's memory;
  ``VmHWM`` belongs to the program itself.
* :func:`peak_memory`: the extra memory a call needs at its peak, above the level just before it.

**How** :func:`peak_memory` **finds the peak.** A thread samples the resident set size while the call
runs (every ``interval_s``; this works everywhere, and is the fallback where nothing better exists).
Samples can miss a peak shorter than the interval, so the system's own record is used as well:

* on Linux the record (``VmHWM``) is reset just before the call (``/proc/self/clear_refs``), so after
  the call it is exactly the call's peak;
* on macOS and Windows the record cannot be reset: when it rose during the call it is the call's peak;
  when it did not (the process had used more memory earlier) the sampled peak stands.

Memory a previous call freed but the C library kept cached would hide part of a call's use; on Linux
with glibc it is handed back to the system (``malloc_trim``) before the level is taken.
"""
from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
from typing import Any, Callable, Optional, Tuple

import psutil

__all__ = ["rss_bytes", "peak_rss_bytes", "peak_memory"]

_PROCESS = psutil.Process()
# Linux: the largest resident set size before peak_memory reset the system's record (VmHWM), bytes.
# Resetting also lowers ru_maxrss, so peak_rss_bytes() takes the larger of the two.
_peak_before_reset = 0


def rss_bytes() -> int:
    """Resident set size of this process now, bytes (``psutil.Process().memory_info().rss``)."""
    return int(_PROCESS.memory_info().rss)


def _ru_maxrss_bytes(ru_maxrss: int, platform: str) -> int:
    """``ru_maxrss`` in bytes: macOS reports bytes, Linux and the BSDs KiB (1024 bytes)."""
    return int(ru_maxrss) if platform == "darwin" else int(ru_maxrss) * 1024


def _os_peak_rss_bytes(platform: str, getrusage: Optional[Callable[[], Any]] = None,
                       process: Optional[Any] = None) -> Optional[int]:
    """The system's record of the peak resident set size, bytes, or ``None`` where it keeps none.

    ``platform`` is a ``sys.platform`` value; ``getrusage`` (returning an object with ``ru_maxrss``) and
    ``process`` (a ``psutil.Process``) can be given to test the conversions of another system.
    """
    if platform == "win32":
        info = (process or _PROCESS).memory_info()
        peak = getattr(info, "peak_wset", None)  # bytes
        return None if peak is None else int(peak)
    if getrusage is None and platform.startswith("linux"):
        hwm = _linux_status_kib("VmHWM")  # this program's own peak (ru_maxrss would include its parent's)
        if hwm is not None:
            return hwm * 1024
    if getrusage is None:
        try:
            import resource
        except ImportError:  # a system without getrusage
            return None
        getrusage = lambda: resource.getrusage(resource.RUSAGE_SELF)  # noqa: E731
    value = getrusage().ru_maxrss
    return _ru_maxrss_bytes(value, platform) if value else None


def peak_rss_bytes() -> Optional[int]:
    """Largest resident set size of this process since it started, bytes; ``None`` where the system keeps
    no record (then sample :func:`rss_bytes`, as :func:`peak_memory` does).

    Linux: ``ru_maxrss`` (reported in KiB); macOS: ``ru_maxrss`` (reported in bytes); Windows: psutil's
    ``peak_wset`` (bytes).
    """
    peak = _os_peak_rss_bytes(sys.platform)
    if peak is None:
        return None
    return max(peak, _peak_before_reset)


def _linux_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # "VmHWM:   30168 kB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_linux_peak() -> bool:
    """Reset Linux's record of the peak resident set size (``VmHWM``) to the current size; False where the
    kernel does not allow it (before Linux 4.0, or without ``/proc``)."""
    global _peak_before_reset
    before = _linux_status_kib("VmHWM")
    if before is None:
        return False
    _peak_before_reset = max(_peak_before_reset, before * 1024)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    after = _linux_status_kib("VmHWM")
    return after is not None and after <= before


def _release_freed_memory() -> None:
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): cached memory may hide part of the use
            pass


def peak_memory(fn: Callable[[], Any], interval_s: float = 0.0005) -> Tuple[float, Any]:
    """The extra memory ``fn()`` needs at its peak, MB, and its result.

    Parameters
    ----------
    fn : callable
        Called once with no arguments. Call it once before to leave out one-time costs (compilation,
        caches); for a lazily evaluated result, make ``fn`` finish the work (e.g. convert to NumPy).
    interval_s : float
        Time between two samples of the resident set size, s (the fallback; see the module text).

    Returns
    -------
    extra_mb : float
        Peak resident set size while ``fn`` ran, minus the resident set size just before it, in MB
        (10**6 bytes). Memory ``fn`` allocates and frees again counts; memory it keeps counts too.
    result
        What ``fn()`` returned.

    Notes
    -----
    Linux: exact (the kernel's record of the peak is reset before the call). macOS and Windows: exact
    when the call raises the process's peak so far, otherwise the largest sample.
    """
    from .solvers.checks import positive_number

    interval_s = positive_number("interval_s", interval_s, what="seconds between samples")
    _release_freed_memory()
    base = rss_bytes()
    linux_reset = sys.platform.startswith("linux") and _reset_linux_peak()
    os_before = None if linux_reset else _os_peak_rss_bytes(sys.platform)
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True, name="psst-peak-memory")
    sampler.start()
    try:
        result = fn()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], rss_bytes())
    if linux_reset:
        hwm = _linux_status_kib("VmHWM")
        if hwm is not None:
            peak[0] = max(peak[0], hwm * 1024)
    else:
        os_after = _os_peak_rss_bytes(sys.platform)
        if os_after is not None and os_before is not None and os_after > os_before:
            peak[0] = max(peak[0], os_after)  # the record rose during the call: that is the call's peak
    return (peak[0] - base) / 1e6, result
