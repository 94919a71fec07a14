"""Peak memory of long runs: the locust model for 1 s and for 10 s, each in its own process.

    python benchmarks/long_run_memory.py [--durations-ms 1000 10000]

Each run goes through ``python -m psst_helpers run locust`` under ``/usr/bin/time -v``; the table
gives wall time and peak resident memory (RSS). The runner keeps one chunk in memory, so the
10 s run should need no more than ~1.2x the memory of the 1 s run. It also times
``load_run``'s check of every written chunk against its checksum (what a resume reads first).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(duration_ms: float, folder: Path) -> tuple[float, float]:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "psst_helpers", "run", "locust",
           "--duration-ms", str(duration_ms), "--out", str(folder), "--no-progress", "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    parts = [float(x) for x in wall.split(":")]
    seconds = sum(x * 60 ** i for i, x in enumerate(reversed(parts)))
    return seconds, rss_kb / 1024


def verify_seconds(folder: Path) -> tuple[float, float]:
    """Seconds ``load_run`` takes to verify the run in ``folder``, and the MB of data it read."""
    from psst_helpers.recording import load_run

    start = time.perf_counter()
    load_run(folder)
    seconds = time.perf_counter() - start
    return seconds, sum(p.stat().st_size for p in folder.glob("*.npy")) / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--durations-ms", type=float, nargs="+", default=[1000.0, 10000.0])
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for d in a.durations_ms:
            folder = Path(tmp) / f"locust_{int(d)}"
            wall, rss = measure(d, folder)
            check_s, mb = verify_seconds(folder)
            rows.append((d, wall, rss))
            print(f"locust {d / 1000:6.1f} s simulated: wall {wall:7.1f} s, peak RSS {rss:7.0f} MiB; "
                  f"verifying its {mb:.0f} MB takes {check_s:.2f} s", flush=True)
    if len(rows) > 1:
        print(f"peak RSS ratio {rows[-1][0] / 1000:g} s / {rows[0][0] / 1000:g} s: {rows[-1][2] / rows[0][2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
