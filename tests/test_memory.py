"""psst_helpers.memory: real measurements on this machine, and each system's units by injection.

The measurements allocate real memory (200 MB of float64) inside the measured call and check the reported
peak: at least 150 MB (NumPy pages in what it fills) and below 1 GB (a unit error of 1024 either way would
land far outside). The conversions of the systems this machine is not (macOS reports ``ru_maxrss`` in
bytes, Linux in KiB, Windows gives ``peak_wset`` in bytes) are checked with their values injected.
"""
from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from psst_helpers import memory

MB = 1e6
N_200MB = 200_000_000 // 8  # float64 values in 200 MB
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks against Linux's /proc")


def _allocate_200mb() -> float:
    a = np.ones(N_200MB)  # filled, so every page is resident
    return float(a.sum())


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


@linux
def test_rss_is_in_bytes_as_proc_says():
    statm_pages = int(open("/proc/self/statm").read().split()[1])
    import os

    from_proc = statm_pages * os.sysconf("SC_PAGE_SIZE")
    assert abs(memory.rss_bytes() - from_proc) < 20 * MB, (memory.rss_bytes(), from_proc)
    assert 10 * MB < memory.rss_bytes() < 64e9


@linux
def test_peak_rss_is_linux_vmhwm_converted_from_kib():
    peak = memory.peak_rss_bytes()
    assert abs(peak - max(_proc_status_kib("VmHWM") * 1024, memory._peak_before_reset)) < 1_000_000
    # grow 300 MB past the peak so far: the record follows, in bytes
    a = np.ones((peak - memory.rss_bytes() + 300_000_000) // 8)
    after = memory.peak_rss_bytes()
    del a
    assert 250 * MB < after - peak < 400 * MB, (after - peak) / MB


def test_a_200mb_allocation_is_seen_as_about_200mb():
    memory.peak_memory(_allocate_200mb)  # once before, as the docstring asks
    extra_mb, result = memory.peak_memory(_allocate_200mb)
    assert result == float(N_200MB)
    assert 150 <= extra_mb < 1000, extra_mb


def test_a_call_below_the_processs_earlier_peak_is_still_measured():
    big = np.ones(2 * N_200MB)  # 400 MB: the process's peak is now above what the call will need
    big[:] = 1.0
    del big
    extra_mb, _ = memory.peak_memory(_allocate_200mb)
    assert 150 <= extra_mb < 1000, extra_mb


def test_memory_the_call_keeps_counts_and_nothing_is_not_much():
    kept = []
    extra_mb, _ = memory.peak_memory(lambda: kept.append(np.ones(N_200MB)))
    assert 150 <= extra_mb < 1000, extra_mb
    kept.clear()
    nothing_mb, _ = memory.peak_memory(lambda: None)
    assert nothing_mb < 50, nothing_mb


def test_the_sampling_fallback_alone_sees_an_allocation_held_a_moment(monkeypatch):
    # as on a system with no record of the peak: only the sampling thread measures
    monkeypatch.setattr(memory, "_reset_linux_peak", lambda: False)
    monkeypatch.setattr(memory, "_os_peak_rss_bytes", lambda platform, *a, **k: None)

    def hold():
        a = np.ones(N_200MB)
        time.sleep(0.1)  # many sampling intervals (0.5 ms)
        return float(a[-1])

    extra_mb, result = memory.peak_memory(hold)
    assert result == 1.0 and 150 <= extra_mb < 1000, extra_mb


def test_ru_maxrss_units_of_each_system_by_injection():
    mib300 = 300 * 2**20
    darwin = memory._os_peak_rss_bytes("darwin", getrusage=lambda: SimpleNamespace(ru_maxrss=mib300))
    assert darwin == mib300, "macOS reports ru_maxrss in bytes"
    linux_ = memory._os_peak_rss_bytes("linux", getrusage=lambda: SimpleNamespace(ru_maxrss=300 * 1024))
    assert linux_ == mib300, "Linux reports ru_maxrss in KiB"
    bsd = memory._os_peak_rss_bytes("freebsd14", getrusage=lambda: SimpleNamespace(ru_maxrss=300 * 1024))
    assert bsd == mib300
    windows = SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=100 * 2**20, peak_wset=mib300))
    assert memory._os_peak_rss_bytes("win32", process=windows) == mib300, "Windows: psutil's peak_wset, bytes"
    no_peak = SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=100 * 2**20))
    assert memory._os_peak_rss_bytes("win32", process=no_peak) is None


class _FakeRecord:
    """A system's peak record that cannot be reset (macOS, Windows), in bytes: set by the test."""

    def __init__(self, before: int, after: int):
        self.values = [before, after]

    def __call__(self, platform, *args, **kwargs):
        assert platform == "darwin"
        return self.values.pop(0)


def test_on_macos_a_record_that_rose_during_the_call_is_its_peak(monkeypatch):
    monkeypatch.setattr(memory, "sys", SimpleNamespace(platform="darwin"))
    base = memory.rss_bytes()
    # the call itself allocates nothing; the record says the process reached base + 300 MB during it
    monkeypatch.setattr(memory, "_os_peak_rss_bytes", _FakeRecord(base, base + 300_000_000))
    extra_mb, _ = memory.peak_memory(lambda: None)
    assert 290 < extra_mb < 310, extra_mb


def test_on_macos_a_record_that_did_not_rise_leaves_the_samples(monkeypatch):
    monkeypatch.setattr(memory, "sys", SimpleNamespace(platform="darwin"))
    high = memory.rss_bytes() + 5_000_000_000  # an earlier, much larger peak of the process
    monkeypatch.setattr(memory, "_os_peak_rss_bytes", _FakeRecord(high, high))

    def hold():
        a = np.ones(N_200MB)
        time.sleep(0.1)
        return a.size

    extra_mb, _ = memory.peak_memory(hold)
    assert 150 <= extra_mb < 1000, extra_mb


def test_gradients_peak_memory_runs_where_the_system_is_not_linux(monkeypatch):
    """Chapter 8 measured only on Linux before (NotImplementedError elsewhere, every Mac included)."""
    G = pytest.importorskip("psst_helpers.gradients")
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("on a GPU gradients.peak_memory reads TensorFlow's allocator instead")
    monkeypatch.setattr(memory, "sys", SimpleNamespace(platform="darwin"))
    monkeypatch.setattr(memory, "_os_peak_rss_bytes", lambda platform, *a, **k: None)  # samples only

    def hold():
        t = tf.ones([N_200MB], tf.float64)
        time.sleep(0.1)
        return tf.reduce_sum(t)

    extra_mb, total = G.peak_memory(hold)
    assert float(total) == float(N_200MB)
    assert 150 <= extra_mb < 1000, extra_mb


def test_bench_locust_reports_peak_rss_in_mib():
    from psst_helpers.bench.locust import _peak_rss_mib

    mib = _peak_rss_mib()
    assert mib * 2**20 == pytest.approx(memory.peak_rss_bytes(), rel=1e-9)
    assert memory.rss_bytes() / 2**20 - 5 <= mib < 64_000


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s"):
        memory.peak_memory(lambda: None, interval_s=0)


@linux
def test_a_program_started_from_a_large_process_reports_its_own_peak():
    """Linux carries ru_maxrss across exec: a child started from a process holding 600 MB would report them."""
    held = np.ones(600_000_000 // 8)  # resident in this process
    code = "from psst_helpers.memory import peak_rss_bytes; print(peak_rss_bytes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.split()[-1]) < 300 * MB, f"the child reported {int(out.split()[-1]) / MB:.0f} MB"
    assert held[-1] == 1.0
