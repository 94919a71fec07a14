"""Long runs in bounded memory, streamed to disk and resumable (chapter 5).

:func:`run` integrates a :class:`~psst_helpers.networks.Model` for any duration in chunks of
compiled steps, handing the state from chunk to chunk. After every chunk it

1. appends the chosen variables, recorded every ``every``-th step, to one ``.npy`` file per
   variable (plain NumPy files, preallocated to their final shape, readable at any time with
   ``np.load(path, mmap_mode="r")``; no HDF5 dependency, and Colab/NumPy users need nothing else),
2. writes a checkpoint — the full state and the step reached — to a temporary file and renames it
   over the previous one, so a checkpoint on disk is always complete.

Killing the process loses at most the chunk in flight; calling :func:`run` again with the same
arguments resumes from the checkpoint, and because each chunk is a deterministic function of its
start state the final files are bit-for-bit those of an uninterrupted run.

Layout of an output folder::

    meta.json        model, parameters, dt, duration, seed, recorded variables, versions
    arrays.npz       the arrays that define the model (connectivity, stimulated neurons)
    t.npy            the recorded times (ms)
    V.npy, ...       one file per recorded variable, shape (len(t), ...); nested names use '.'
    checkpoint.npz   the state after the last finished chunk (deleted never; kept for extension)

Peak memory does not grow with the duration: one chunk of records is in memory at a time, and
the files are written with ordinary writes (a memory map would count its dirty pages in RSS).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__
from ._progress import progress_bar
from ._tree import flatten, leaf_paths, unflatten
from .errors import PSSTError
from .solvers import checks

__all__ = ["run", "Recording", "load_run", "CheckpointError", "OutputExistsError"]

PathLike = Union[str, os.PathLike]
CHECKPOINT = "checkpoint.npz"
META = "meta.json"


class CheckpointError(PSSTError, ValueError):
    """A checkpoint is corrupt, or belongs to a different run than the one asked for."""


class OutputExistsError(PSSTError, FileExistsError):
    """The output folder holds another run; pass ``overwrite=True`` (``--overwrite``) to replace it."""


def _leaf_name(path: str) -> str:
    """``"['syn']['gaba']"`` -> ``"syn.gaba"`` (a file-name-friendly variable name)."""
    return ".".join(part.strip("'\"") for part in path.strip("[]").split("]["))


def _fingerprint(meta: Dict[str, Any]) -> str:
    """Hash of everything that determines the numbers in the files (not versions or timestamps)."""
    keys = ("model", "params", "dt", "n_steps", "every", "record", "dtype", "method", "chunk_steps", "arrays_sha256")
    blob = json.dumps({k: meta[k] for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _arrays_sha256(arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    return h.hexdigest()


def _write_atomic(path: Path, write) -> None:
    """Write via a temporary file in the same folder, fsync it, then rename it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _create_npy(path: Path, shape: Tuple[int, ...], dtype: np.dtype) -> None:
    """Create a .npy file of the final shape without holding it in memory (the data part is sparse)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": tuple(shape)})
        offset = fh.tell()
        fh.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _write_rows(path: Path, start_row: int, rows: np.ndarray) -> None:
    """Write ``rows`` (C order) into the .npy file at ``path`` starting at row ``start_row``."""
    with open(path, "r+b") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(fh)
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        fh.seek(fh.tell() + start_row * row_bytes)
        fh.write(np.ascontiguousarray(rows, dtype=dtype).tobytes())


@dataclass
class Recording:
    """A run on disk: ``rec.t``, ``rec["V"]`` (memory-mapped, read-only), ``rec.meta``."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        meta_file = self.path / META
        if not meta_file.exists():
            raise FileNotFoundError(f"{self.path} holds no psst run (no {META})")
        self.meta: Dict[str, Any] = json.loads(meta_file.read_text())

    @property
    def variables(self) -> List[str]:
        return list(self.meta["files"])

    @property
    def t(self) -> np.ndarray:
        return np.load(self.path / "t.npy", mmap_mode="r")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.meta["files"]:
            raise KeyError(f"{name!r} was not recorded; recorded: {self.variables}")
        return np.load(self.path / self.meta["files"][name], mmap_mode="r")

    @property
    def steps_done(self) -> int:
        ck = self.path / CHECKPOINT
        if not ck.exists():
            return 0
        with np.load(ck) as data:
            return int(data["__next_step"])

    @property
    def complete(self) -> bool:
        return self.steps_done >= self.meta["n_steps"]

    def arrays(self) -> Dict[str, np.ndarray]:
        with np.load(self.path / "arrays.npz") as data:
            return {k: data[k] for k in data.files}


def load_run(path: PathLike) -> Recording:
    """Open a run written by :func:`run`."""
    return Recording(Path(path))


def _load_checkpoint(path: Path, fingerprint: str, treedef, dtype) -> Tuple[int, Any]:
    try:
        with np.load(path) as data:
            found = str(data["__fingerprint"])
            step = int(data["__next_step"])
            leaves = [np.array(data[f"leaf{i}"]) for i in range(treedef.num_leaves)]
    except Exception as exc:  # zipfile.BadZipFile, EOFError, KeyError, ValueError ...
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); it is corrupt or truncated. "
            "Delete it to restart from the beginning, or pass overwrite=True (--overwrite)."
        ) from None
    if found != fingerprint:
        raise CheckpointError(f"the checkpoint {path} belongs to a different run (model, parameters, dt, duration, "
                              "recording or chunking differ); use another output folder or overwrite=True")
    if any(x.dtype != dtype for x in leaves):
        raise CheckpointError(f"the checkpoint {path} has the wrong dtype for this run")
    return step, unflatten(treedef, leaves)


def _progress_bar(progress: Optional[bool], total_ms: float, done_ms: float):
    return progress_bar(progress, total=round(total_ms, 6), initial=round(done_ms, 6), unit="ms", desc="simulated",
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} ms [{elapsed}<{remaining}, {postfix}]")


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
        Simulated time per compiled chunk; rounded to a whole number of ``every`` steps. Memory
        grows with the chunk, never with the duration.
    dtype : float32 or float64
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
    """
    from .solvers.tf_solver import Integrator

    out = Path(out)
    every = checks.check_every(every)
    n_steps = int(round(duration_ms / dt))
    if n_steps < 1 or not np.isclose(n_steps * dt, duration_ms, rtol=1e-9, atol=0.0):
        raise ValueError(f"duration_ms = {duration_ms} is not a whole number of steps of dt = {dt}")
    chunk_steps = max(every, int(round(chunk_ms / dt)) // every * every)
    dtype = np.dtype(dtype)
    y0 = model.state(dtype)
    rec_leaves, rec_def = flatten(checks.select(list(record), y0))
    names = [_leaf_name(p) for p in leaf_paths(rec_def)]  # e.g. "V", "syn.gaba"
    n_rec = n_steps // every + 1
    meta = {
        "model": model.name, "params": model.params, "dt": dt, "duration_ms": duration_ms, "n_steps": n_steps,
        "every": every, "record": list(record), "dtype": dtype.name, "method": method, "chunk_steps": chunk_steps,
        "seed": seed if seed is not None else model.params.get("seed"),
        "arrays_sha256": _arrays_sha256(model.arrays),
        "files": {name: f"{name}.npy" for name in names},
        "shapes": {name: [n_rec, *np.shape(x)] for name, x in zip(names, rec_leaves)},
        "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta["fingerprint"] = _fingerprint(meta)
    _, treedef, _ = checks.check_state(y0)

    ck_path = out / CHECKPOINT
    start_step, state = 0, y0
    if out.exists() and any(out.iterdir()):
        old_meta = out / META
        if overwrite:
            _clear(out, names)
        elif not old_meta.exists():
            raise OutputExistsError(f"{out} exists and is not a psst run folder; choose an empty folder "
                                    "or pass overwrite=True (--overwrite)")
        else:
            previous = json.loads(old_meta.read_text())
            if previous.get("fingerprint") != meta["fingerprint"]:
                raise OutputExistsError(
                    f"{out} holds a different run ({_differences(previous, meta)}); "
                    "use another folder or pass overwrite=True (--overwrite) to replace it")
            if ck_path.exists():
                start_step, state = _load_checkpoint(ck_path, meta["fingerprint"], treedef, dtype)
                meta["created"] = previous.get("created", meta["created"])
            else:
                _clear(out, names)  # a run that died before its first checkpoint: start again
    out.mkdir(parents=True, exist_ok=True)
    if start_step == 0:
        _write_atomic(out / "arrays.npz", lambda fh: np.savez(fh, **model.arrays))
        t_rec = dt * (np.arange(n_rec, dtype=np.float64) * every)  # exactly the solver grid's values
        _write_atomic(out / "t.npy", lambda fh: np.save(fh, t_rec))
        for name, x in zip(names, rec_leaves):
            _create_npy(out / meta["files"][name], (n_rec, *np.shape(x)), dtype)
            _write_rows(out / meta["files"][name], 0, np.asarray(x)[None])
    _write_atomic(out / META, lambda fh: fh.write(json.dumps(meta, indent=1, default=str).encode()))

    integ = Integrator(model.derivatives, method=method, record=list(record), every=every,
                       post_step=model.post_step, xla=xla)
    bar = _progress_bar(progress, n_steps * dt, start_step * dt)
    chunks = 0
    try:
        while start_step < n_steps and (max_chunks is None or chunks < max_chunks):
            stop = min(start_step + chunk_steps, n_steps)
            t_chunk = dt * np.arange(start_step, stop + 1, dtype=np.float64)
            wall = time.perf_counter()
            records, state = integ(state, t_chunk, return_final=True)
            # Each chunk records its own first point, which is the previous chunk's last one:
            # drop it (the stitching pitfall of batching by hand).
            for name, x in zip(names, flatten(records)[0]):
                rows = x.numpy()[1:]
                _write_rows(out / meta["files"][name], start_step // every + 1, rows)
            state_np = [np.asarray(x) for x in flatten(state)[0]]
            state = unflatten(treedef, state_np)
            ck = {f"leaf{i}": x for i, x in enumerate(state_np)}
            ck.update(__next_step=np.int64(stop), __fingerprint=np.array(meta["fingerprint"]))
            _write_atomic(ck_path, lambda fh: np.savez(fh, **ck))
            if bar is not None:
                bar.update(round((stop - start_step) * dt, 6))
                bar.set_postfix_str(f"{(stop - start_step) * dt / (time.perf_counter() - wall):.0f} sim-ms/s")
            start_step = stop
            chunks += 1
    finally:
        if bar is not None:
            bar.close()
    return Recording(out)


def _clear(out: Path, names: Iterable[str]) -> None:
    """Remove the files a run writes (those of the old run's metadata and of the new one), nothing else."""
    files = {META, "arrays.npz", "t.npy", CHECKPOINT} | {f"{n}.npy" for n in names}
    old = out / META
    if old.exists():
        try:
            files |= set(json.loads(old.read_text()).get("files", {}).values())
        except ValueError:
            pass
    for name in files:
        for p in (out / name, out / (name + ".tmp")):
            if p.is_file():
                p.unlink()


def _differences(a: Dict[str, Any], b: Dict[str, Any]) -> str:
    keys = ("model", "dt", "n_steps", "every", "record", "dtype", "method", "chunk_steps", "params", "arrays_sha256")
    diff = [k for k in keys if a.get(k) != json.loads(json.dumps(b.get(k), default=str))]
    return "differs in " + ", ".join(diff) if diff else "written by another version"


def _versions() -> Dict[str, str]:
    import tensorflow as tf

    return {"psst_helpers": __version__, "numpy": np.__version__, "tensorflow": tf.__version__,
            "python": platform.python_version()}
