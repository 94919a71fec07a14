"""The driver loop of a long run: integrate a chunk with the model's shared compiled loop, write its
rows, then its checkpoint; resume where the folder says (chapter 5)."""
from __future__ import annotations

import contextlib
import errno
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .._progress import progress_bar
from .._tree import flatten, unflatten
from ..analysis import count_steps
from ..errors import CheckpointError, DamagedRunError, PSSTError, RunWriteError
from ..solvers import checks
from .checkpoint import FolderLock, write_checkpoint
from .files import named, notice, write_rows
from .folder import (CHECKPOINT, LOCK, STATES, PathLike, Recording, check_out, load_run, new_meta, prepare, read_meta,
                     refuse_another_run)
from .layout import Geometry, Layout


def _write_error(exc: OSError, where: Path, kept: str) -> RunWriteError:
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free some disk space (or raise the quota)"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the folder writable (or give another output folder)"
    else:
        advice = "fix the cause"
    return RunWriteError(f"cannot write {exc.filename or where}: {exc.strerror or exc}; {kept}: {advice}, then run "
                         "the same command again", errno=code, filename=str(exc.filename or where))


def _check_chunk_ms(chunk_ms: Any) -> float:
    return checks.positive_number("chunk_ms", chunk_ms, what="simulated ms per chunk, e.g. 100",
                                  why_finite="a chunk must end to be written to disk",
                                  why_positive="each chunk must advance the simulation, so it must be positive")


def run(
    model: Any,
    duration_ms: float,
    out: PathLike,
    *,
    dt: float = 0.01,
    record: Sequence[str] = ("V",),
    every: int = 10,
    chunk_ms: float = 100.0,
    dtype: Any = np.float64,
    method: str = "rk4",
    xla: bool = True,
    overwrite: bool = False,
    progress: Optional[bool] = None,
    seed: Optional[int] = None,
    max_chunks: Optional[int] = None,
) -> Recording:
    """Integrate ``model`` for ``duration_ms`` into the folder ``out``, resuming if it holds a checkpoint.

    The chunks run in the compiled loop :func:`~psst_helpers.networks.simulate` keeps for the model
    (:func:`~psst_helpers.networks.integrator_for`): a resume or a second run in one process traces nothing again.

    Parameters
    ----------
    model : psst_helpers.networks.Model
    duration_ms, dt : float
        Simulated time and step (ms); the grid is ``dt * arange(n_steps + 1)``.
    record : sequence of str
        State entries to store (top-level names; nested dicts are stored one file per leaf).
    every : int
        Store every ``every``-th step.
    chunk_ms : float
        Simulated time per compiled chunk (ms); rounded to a whole number of ``every`` steps, at
        least one. Memory grows with the chunk, never with the duration.
    dtype : float32 or float64
        dtype of the model's state (entries the model keeps in another dtype keep it).
    overwrite : bool
        Replace a different run already in ``out``. Without it such a folder is refused.
    progress : bool or None
        tqdm progress bar of simulated ms; None = only in a terminal or notebook.
    seed : int, optional
        Stored in the metadata (builders such as the locust model take their own seed).
    max_chunks : int, optional
        Stop after this many chunks (for tests and demonstrations); call again to continue.

    Returns
    -------
    Recording
        The run on disk (complete unless ``max_chunks`` stopped it).

    Raises
    ------
    TimeGridError, ValueError
        A duration, step, chunk, ``every`` or ``max_chunks`` that cannot make a run; the message says why.
    OutputExistsError
        ``out`` is a file, lies under one, or holds something else than this run (without ``overwrite``): another
        model (its structure, a reader's own parts included), start state, grid or recording; the message names it.
    CheckpointError
        The checkpoint cannot be read or belongs to another run.
    RunLockedError
        Another process is writing ``out``.
    RunWriteError
        The disk refused a write (full, read-only); the run stays resumable from its last checkpoint.

    Warns
    -----
    RunNotice
        When damaged data is recomputed, a stale lock is taken over, or the run is resumed with other
        NumPy/TensorFlow/Python versions than it started with.
    """
    out = Path(out)
    n_steps = count_steps(duration_ms, dt, duration_name="duration_ms")
    every = checks.check_every(every)
    chunk_ms = _check_chunk_ms(chunk_ms)
    if max_chunks is not None and (isinstance(max_chunks, bool) or not isinstance(max_chunks, (int, np.integer))
                                   or max_chunks < 1):
        raise ValueError(f"max_chunks = {max_chunks!r}: give a positive number of chunks to run now, or None to run "
                         "to the end")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype = {dtype}: runs are float32 or float64")
    geo = Geometry(n_steps, every, max(every, int(round(chunk_ms / dt)) // every * every))
    y0 = model.state(dtype)
    layout = Layout.of(y0)
    meta = new_meta(model, y0, layout, geo, dt=dt, duration_ms=duration_ms, record=record, dtype=dtype, method=method,
                    seed=seed)
    check_out(out)

    # Refused before anything is written (no lock file in someone else's folder); checked again under the lock.
    previous, _ = read_meta(out)
    refuse_another_run(out, meta, previous, overwrite)
    # A finished, intact run is returned without writing anything (a read-only folder works).
    if not overwrite and previous is not None and previous.get("fingerprint") == meta["fingerprint"]:
        with contextlib.suppress(CheckpointError, DamagedRunError):
            rec = load_run(out)
            if rec.complete:
                return rec

    total_ms = n_steps * dt
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(named(exc, out), out, "nothing was written") from None
    lock = FolderLock(out / LOCK)
    try:
        lock.acquire()
    except OSError as exc:  # RunLockedError is no OSError: it passes
        raise _write_error(named(exc, out / LOCK), out, "the folder is unchanged") from None
    start_step = 0
    try:
        start_step, state, crc, old_crc = prepare(out, meta, model, y0, layout, overwrite)
        from ..networks import integrator_for  # simulate()'s compiled loop: a resume or a second run reuses it
        integ = integrator_for(model, method=method, record=tuple(record), every=every, xla=xla)
        bar = progress_bar(progress, total=round(total_ms, 6), initial=round(start_step * dt, 6), unit="ms",
                           desc="simulated", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} ms [{elapsed}<{remaining}"
                           "{postfix}]")  # tqdm puts the ", " before a postfix
        spec_names = list(meta["files"].values()) + [STATES]
        chunks = 0
        try:
            while start_step < n_steps and (max_chunks is None or chunks < max_chunks):
                c = start_step // geo.chunk_steps
                stop = min(start_step + geo.chunk_steps, n_steps)
                t_chunk = dt * np.arange(start_step, stop + 1, dtype=np.float64)
                wall = time.perf_counter()
                records, state = integ(state, t_chunk, return_final=True)
                column = []
                # Each chunk records its own first point, which is the previous chunk's last one:
                # drop it (the stitching pitfall of batching by hand); chunk 0 writes it, as row 0.
                for file, x in zip(meta["files"].values(), flatten(records)[0]):
                    rows = np.asarray(x)
                    column.append(write_rows(out / file, geo.rows(c)[0], rows if c == 0 else rows[1:]))
                state_np = [np.asarray(x) for x in flatten(state)[0]]
                state = unflatten(layout.treedef, state_np)
                column.append(write_rows(out / STATES, c + 1, layout.to_bytes(state_np)[None]))
                column = np.array(column, dtype=np.uint32)
                if old_crc is not None and c < old_crc.shape[1]:
                    # a recomputed chunk must give the bytes it gave the first time (whatever is on disk now)
                    changed = [n for n, a, b in zip(spec_names, old_crc[:, c], column) if a != b]
                    if changed:
                        notice(f"recomputed chunk {c} differs from the one computed before ({', '.join(changed)}); "
                               "another TensorFlow or NumPy version, or other hardware, gives other rounding")
                        old_crc = None
                crc = np.concatenate([crc[:, :c], column[:, None]], axis=1)
                write_checkpoint(out / CHECKPOINT, meta["fingerprint"], stop, state_np, spec_names, crc)
                if bar is not None:
                    bar.update(round((stop - start_step) * dt, 6))
                    bar.set_postfix_str(f"{(stop - start_step) * dt / (time.perf_counter() - wall):.0f} sim-ms/s")
                start_step = stop
                chunks += 1
        finally:
            if bar is not None:
                bar.close()
    except OSError as exc:
        if isinstance(exc, PSSTError):
            raise
        kept = (f"the run on disk is intact up to {start_step * dt:g} of {total_ms:g} ms" if start_step > 0
                else "nothing was computed yet")
        raise _write_error(exc, out, kept) from None
    finally:
        lock.release()
    return Recording(out)
