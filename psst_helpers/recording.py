"""Long runs in bounded memory, streamed to disk, verified and resumable (chapter 5).

:func:`run` integrates a :class:`~psst_helpers.networks.Model` for any duration in chunks of
compiled steps, handing the state from chunk to chunk. After every chunk it

1. writes the chosen variables, recorded every ``every``-th step, into one ``.npy`` file per
   variable (plain NumPy files, preallocated to their final shape, readable at any time with
   ``np.load(path, mmap_mode="r")``; no HDF5 dependency, and Colab/NumPy users need nothing else),
   and the full state reached into ``chunk_states.npy``, and flushes them to the disk (fsync);
2. then writes a checkpoint -- the full state, the step reached and a CRC-32 checksum of every
   chunk of every file -- to a temporary file, renames it over the previous one and flushes the
   folder, so a checkpoint on disk is always complete and never covers data that is not on disk.

Killing the process loses at most the chunk in flight; calling :func:`run` again with the same
arguments resumes from the checkpoint, and because each chunk is a deterministic function of its
start state the final files are bit-for-bit those of an uninterrupted run.

Data on disk is never trusted blindly: a resume and :func:`load_run` first compare every file
with the checksums of the checkpoint. A resume recomputes damaged, truncated or deleted data from
the last chunk whose data and start state are intact (and says so); :func:`load_run` refuses a
damaged run with :class:`DamagedRunError`, naming the file and what to do.

Layout of an output folder::

    meta.json          model, parameters, dt, duration, seed, recorded variables, versions
    arrays.npz         the arrays that define the model (connectivity, stimulated neurons)
    t.npy              the recorded times (ms)
    V.npy, ...         one file per recorded variable, shape (len(t), ...); nested names use '.'
    chunk_states.npy   the full state at every chunk boundary (raw bytes), to recompute from there
    checkpoint.npz     the state after the last finished chunk, the step reached, the checksums
    run.lock           only while a run writes the folder (a second run is refused meanwhile)

Peak memory does not grow with the duration: one chunk of records is in memory at a time, and
the files are written with ordinary writes (a memory map would count its dirty pages in RSS).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import socket
import tempfile
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__
from ._progress import progress_bar
from ._tree import flatten, leaf_paths, unflatten
from .analysis import count_steps
from .errors import (CheckpointError, DamagedRunError, OutputExistsError, PSSTError, RunLockedError,  # noqa: F401
                     RunWriteError)
from .solvers import checks

try:  # advisory locks that the kernel releases when the process dies (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock falls back to the PID written in it
    fcntl = None

__all__ = ["run", "Recording", "load_run", "CheckpointError", "OutputExistsError", "DamagedRunError",
           "RunLockedError", "RunWriteError", "RunNotice"]

PathLike = Union[str, os.PathLike]
CHECKPOINT = "checkpoint.npz"
META = "meta.json"
TIMES = "t.npy"
ARRAYS = "arrays.npz"
STATES = "chunk_states.npy"
LOCK = "run.lock"
FORMAT = 2  # folder layout: 2 = checksummed chunks and chunk states


class RunNotice(UserWarning):
    """Something :func:`run` did on its own that the user should know about (a repair, a taken-over lock)."""


def _notice(message: str) -> None:
    warnings.warn(message, RunNotice, stacklevel=3)


# -- metadata ------------------------------------------------------------------------------------

_FINGERPRINT_KEYS = ("format", "psst_version", "model", "params", "dt", "n_steps", "every", "record", "dtype",
                     "method", "chunk_steps", "state_layout", "arrays_sha256")


def _leaf_name(path: str) -> str:
    """``"['syn']['gaba']"`` -> ``"syn.gaba"`` (a file-name-friendly variable name)."""
    return ".".join(part.strip("'\"") for part in path.strip("[]").split("]["))


def _fingerprint(meta: Dict[str, Any]) -> str:
    """Hash of everything that determines the numbers in the files, the package version included."""
    blob = json.dumps({k: meta[k] for k in _FINGERPRINT_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _arrays_sha256(arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    return h.hexdigest()


def _same_json(a: Any, b: Any) -> bool:
    return json.loads(json.dumps(a, default=str)) == json.loads(json.dumps(b, default=str))


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    if old.get("format") != new["format"]:
        return (f"it was written by psst_helpers {(old.get('versions') or {}).get('psst_helpers', '?')} in an older "
                "folder layout without checksums, which this version cannot verify or resume;")
    if old.get("psst_version") != new["psst_version"]:
        return (f"it was written by psst_helpers {old.get('psst_version') or (old.get('versions') or {}).get('psst_helpers', '?')}"
                f" and this is {new['psst_version']}, whose kernels may give other numbers, so the two cannot be "
                "joined; finish it with the version that started it, or")
    diff = [k for k in _FINGERPRINT_KEYS if not _same_json(old.get(k), new.get(k))]
    return "it differs in " + ", ".join(diff) + ";" if diff else "it was made differently;"


def _code_sha256() -> str:
    """Hash of the package's source: an edited (development) install changes it without a new version."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _versions() -> Dict[str, str]:
    import tensorflow as tf

    return {"psst_helpers": __version__, "psst_helpers_code": _code_sha256(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "python": platform.python_version()}


# -- chunk geometry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Geometry:
    n_steps: int
    every: int
    chunk_steps: int

    @property
    def n_chunks(self) -> int:
        return -(-self.n_steps // self.chunk_steps)

    @property
    def n_rec(self) -> int:
        return self.n_steps // self.every + 1

    def chunks_done(self, next_step: int) -> int:
        return -(-next_step // self.chunk_steps)

    def steps(self, c: int) -> Tuple[int, int]:
        start = c * self.chunk_steps
        return start, min(start + self.chunk_steps, self.n_steps)

    def rows(self, c: int) -> Tuple[int, int]:
        """Record rows ``[r0, r1)`` written by chunk ``c`` (chunk 0 also writes the start, row 0)."""
        start, stop = self.steps(c)
        return (0 if c == 0 else start // self.every + 1), stop // self.every + 1


# -- files ---------------------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    """Make renames and new files in ``folder`` durable (a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _named(exc: OSError, path: Path) -> OSError:
    if exc.filename is None:
        exc.filename = str(path)
    return exc


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write via a uniquely named temporary file in the same folder, fsync it, rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file replaced was not
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _named(exc, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _read_header(fh) -> Tuple[Tuple[int, ...], np.dtype]:
    major, _ = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if fortran:
        raise ValueError("Fortran order")
    return tuple(shape), dtype


def _create_npy(path: Path, shape: Tuple[int, ...], dtype: np.dtype) -> None:
    """Create a .npy file of the final shape without holding it in memory (the data part is sparse)."""
    try:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                      "fortran_order": False, "shape": tuple(shape)})
            fh.truncate(fh.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise _named(exc, path)


def _write_rows(path: Path, start_row: int, rows: np.ndarray) -> int:
    """Write ``rows`` into the .npy file at ``path`` from row ``start_row``, fsync; return their CRC-32."""
    try:
        with open(path, "r+b") as fh:
            shape, dtype = _read_header(fh)
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            data = np.ascontiguousarray(rows, dtype=dtype).tobytes()
            fh.seek(fh.tell() + start_row * row_bytes)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the checkpoint that covers it
    except OSError as exc:
        raise _named(exc, path)
    return zlib.crc32(data)


@dataclass(frozen=True)
class _FileSpec:
    """A checksummed file: its array shape and dtype, and which rows chunk ``c`` writes."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    rows: Callable[[int], Tuple[int, int]]


def _check_file(folder: Path, spec: _FileSpec, crcs: Sequence[int]) -> Optional[Tuple[int, str]]:
    """``None`` if the file holds the checksummed chunks, else ``(first bad chunk, what is wrong)``."""
    path = folder / spec.name
    if not path.is_file():
        return 0, "is missing"
    try:
        with open(path, "rb") as fh:
            try:
                shape, dtype = _read_header(fh)
            except ValueError:
                return 0, "has no valid .npy header"
            if shape != spec.shape or dtype != spec.dtype:
                return 0, f"holds an array {shape} of {dtype}, not {spec.shape} of {spec.dtype}"
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            for c, crc in enumerate(crcs):
                r0, r1 = spec.rows(c)
                if size < offset + r1 * row_bytes:
                    return c, (f"is truncated: {size} bytes, but its rows {r0}-{r1 - 1} end at byte "
                               f"{offset + r1 * row_bytes}")
                fh.seek(offset + r0 * row_bytes)
                if zlib.crc32(fh.read((r1 - r0) * row_bytes)) != int(crc):
                    return c, f"has rows {r0}-{r1 - 1} that do not match their checksum"
    except OSError as exc:
        return 0, f"cannot be read ({exc.strerror})"
    return None


def _extend(path: Path, spec: _FileSpec) -> None:
    """Give a (truncated) .npy file its full size again, or create it if it is missing or malformed."""
    try:
        with open(path, "rb") as fh:
            ok = _read_header(fh) == (spec.shape, spec.dtype)
            offset = fh.tell()
    except (OSError, ValueError):
        ok = False
    if not ok:
        _create_npy(path, spec.shape, spec.dtype)
        return
    full = offset + int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
    try:
        with open(path, "r+b") as fh:
            if os.fstat(fh.fileno()).st_size != full:
                fh.truncate(full)
                os.fsync(fh.fileno())
    except OSError as exc:
        raise _named(exc, path)


# -- the state as bytes (any tree of arrays, leaves of any dtypes) ----------------------------------

@dataclass(frozen=True)
class _Layout:
    """Paths, dtypes and shapes of the state's leaves: how a state is turned into one row of bytes."""

    treedef: Any
    paths: Tuple[str, ...]
    dtypes: Tuple[np.dtype, ...]
    shapes: Tuple[Tuple[int, ...], ...]

    @classmethod
    def of(cls, state: Any) -> "_Layout":
        leaves, treedef = flatten(state)
        arrays = [np.asarray(x) for x in leaves]
        return cls(treedef, tuple(leaf_paths(treedef)), tuple(a.dtype for a in arrays),
                   tuple(a.shape for a in arrays))

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in zip(self.shapes, self.dtypes))

    def describe(self) -> List[List[Any]]:
        return [[p, d.name, list(s)] for p, d, s in zip(self.paths, self.dtypes, self.shapes)]

    def to_bytes(self, leaves: Sequence[Any]) -> np.ndarray:
        return np.frombuffer(b"".join(np.ascontiguousarray(np.asarray(x), dtype=d).tobytes()
                                      for x, d in zip(leaves, self.dtypes)), dtype=np.uint8)

    def from_bytes(self, row: np.ndarray) -> Any:
        leaves, pos, raw = [], 0, np.ascontiguousarray(row).tobytes()
        for d, s in zip(self.dtypes, self.shapes):
            n = int(np.prod(s, dtype=np.int64)) * d.itemsize
            leaves.append(np.frombuffer(raw[pos:pos + n], dtype=d).reshape(s).copy())
            pos += n
        return unflatten(self.treedef, leaves)


# -- checkpoints -----------------------------------------------------------------------------------

@dataclass
class _Checkpoint:
    next_step: int
    state_leaves: List[np.ndarray]
    names: List[str]       # checksummed files, in the rows' order of ``crc``
    crc: np.ndarray        # uint32 (len(names), chunks done)


def _read_checkpoint(path: Path) -> Tuple[str, _Checkpoint]:
    """``(fingerprint, checkpoint)``; CheckpointError if the file cannot be read."""
    try:
        with np.load(path) as data:
            found = str(data["__fingerprint"])
            step = int(data["__next_step"])
            names = [str(x) for x in data["__crc_names"]] if "__crc_names" in data.files else []
            crc = np.array(data["__crc"]) if "__crc" in data.files else np.zeros((0, 0), np.uint32)
            n_leaves = sum(1 for k in data.files if k.startswith("leaf"))
            leaves = [np.array(data[f"leaf{i}"]) for i in range(n_leaves)]
    except Exception as exc:  # zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError ...
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); it is corrupt or truncated. "
            "Delete it to restart from the beginning, or pass overwrite=True (--overwrite)."
        ) from None
    return found, _Checkpoint(step, leaves, names, crc)


def _load_checkpoint(path: Path, fingerprint: str, layout: _Layout) -> _Checkpoint:
    found, ck = _read_checkpoint(path)
    if found != fingerprint:
        raise CheckpointError(f"the checkpoint {path} belongs to a different run (model, parameters, dt, duration, "
                              "recording, chunking or psst_helpers version differ); use another output folder or "
                              "overwrite=True (--overwrite)")
    got = [(x.dtype, x.shape) for x in ck.state_leaves]
    want = list(zip(layout.dtypes, layout.shapes))
    if got != want:
        raise CheckpointError(f"the checkpoint {path} holds a state of another layout ({len(got)} entries) than this "
                              f"model's ({len(want)} entries, {layout.describe()[:3]}...); use another output folder "
                              "or overwrite=True (--overwrite)")
    return ck


def _write_checkpoint(path: Path, fingerprint: str, next_step: int, leaves: Sequence[np.ndarray],
                      names: Sequence[str], crc: np.ndarray) -> None:
    ck = {f"leaf{i}": x for i, x in enumerate(leaves)}
    ck.update(__next_step=np.int64(next_step), __fingerprint=np.array(fingerprint),
              __crc_names=np.array(list(names)), __crc=np.asarray(crc, dtype=np.uint32))
    _write_atomic(path, lambda fh: np.savez(fh, **ck))


# -- the lock --------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class _FolderLock:
    """``run.lock``: one writer per folder. The kernel drops the lock when its holder dies (flock)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                previous = os.read(fd, 256).decode(errors="replace").split()
                pid = int(previous[0]) if previous and previous[0].isdigit() else None
                host = previous[1] if len(previous) > 1 else "?"
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        held = os.pread(fd, 256, 0).decode(errors="replace").split()  # written after we read
                        pid = int(held[0]) if held and held[0].isdigit() else pid
                        host = held[1] if len(held) > 1 else host
                        raise RunLockedError(
                            f"{self.path.parent} is being written by another run (process {pid} on {host}); wait "
                            "for it to finish or stop it, or write this run to another folder") from None
                    try:  # the holder may have removed the file between our open and our lock: try again
                        if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                            os.close(fd)
                            continue
                    except FileNotFoundError:
                        os.close(fd)
                        continue
                elif pid is not None and pid != os.getpid() and host == socket.gethostname() and _pid_alive(pid):
                    raise RunLockedError(f"{self.path.parent} is being written by another run (process {pid}); wait "
                                         "for it to finish or stop it, or write this run to another folder")
            except BaseException:
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                raise
            if pid is not None:
                why = ("it no longer runs (killed or crashed)" if not _pid_alive(pid) or host != socket.gethostname()
                       else "that process id now belongs to another program")
                _notice(f"{self.path} was left by process {pid} on {host}, and {why}; this run takes it over")
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise RunLockedError(f"could not lock {self.path}: other processes keep replacing it")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink before unlocking: a waiting run then sees a new file
        finally:
            os.close(self.fd)
            self.fd = None


# -- a run on disk ---------------------------------------------------------------------------------

@dataclass
class Recording:
    """A run on disk: ``rec.t``, ``rec["V"]`` (memory-mapped, read-only), ``rec.meta``.

    Open it with :func:`load_run`, which first verifies the files against the checkpoint.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        meta_file = self.path / META
        if not meta_file.exists():
            raise FileNotFoundError(f"{self.path} holds no psst run (no {META})")
        try:
            self.meta: Dict[str, Any] = json.loads(meta_file.read_text())
        except ValueError as exc:
            raise DamagedRunError(f"{meta_file} is not valid JSON ({exc}); run the same command again with the "
                                  "same arguments to rewrite it", file=meta_file, chunk=0) from None

    @property
    def variables(self) -> List[str]:
        return list(self.meta["files"])

    @property
    def t(self) -> np.ndarray:
        return np.load(self.path / TIMES, mmap_mode="r")

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.meta["files"]:
            raise KeyError(f"{name!r} was not recorded; recorded: {self.variables}")
        return np.load(self.path / self.meta["files"][name], mmap_mode="r")

    @property
    def steps_done(self) -> int:
        """Steps integrated and checkpointed (0 before the first chunk)."""
        ck = self.path / CHECKPOINT
        if not ck.exists():
            return 0
        return _read_checkpoint(ck)[1].next_step

    @property
    def complete(self) -> bool:
        return self.steps_done >= self.meta["n_steps"]

    def arrays(self) -> Dict[str, np.ndarray]:
        with np.load(self.path / ARRAYS) as data:
            return {k: data[k] for k in data.files}

    def verify(self) -> None:
        """Check every file against the checkpoint's checksums; raise :class:`DamagedRunError` if one differs.

        Only the chunks the checkpoint covers are checked (a run in progress has rows still to come).
        """
        meta = self.meta
        if meta.get("format") != FORMAT:
            _notice(f"{self.path} was written by psst_helpers "
                    f"{(meta.get('versions') or {}).get('psst_helpers', '?')} without checksums; "
                    "its data cannot be verified")
            return
        ck_path = self.path / CHECKPOINT
        if not ck_path.exists():
            return  # nothing computed yet (steps_done is 0): no rows to verify
        found, ck = _read_checkpoint(ck_path)
        if found != meta["fingerprint"]:
            raise DamagedRunError(f"{ck_path} belongs to another run than {self.path / META}; the folder mixes two "
                                  "runs: rerun with overwrite=True (--overwrite)", file=ck_path, chunk=0)
        geo = _Geometry(meta["n_steps"], meta["every"], meta["chunk_steps"])
        problems = _verify_files(self.path, _specs(meta, geo), ck)
        problems.pop(STATES, None)  # only needed to recompute; the data itself is intact
        extra = _verify_fixed(self.path, meta, geo)
        if problems:
            name, (chunk, what) = min(problems.items(), key=lambda kv: kv[1][0])
            start, stop = geo.steps(chunk)
            others = sorted(set(problems) - {name}) + [f for f, _ in extra]
            where = "" if what == "is missing" else f" (chunk {chunk}, {start * meta['dt']:g}-{stop * meta['dt']:g} ms)"
            raise DamagedRunError(
                f"{self.path / name} {what}{where}"
                + (f"; also damaged: {', '.join(others)}" if others else "")
                + ". Run the same command again (or recording.run with the same arguments) to recompute it from "
                "the last intact chunk.", file=self.path / name, chunk=chunk)
        if extra:
            name, what = extra[0]
            raise DamagedRunError(f"{self.path / name} {what}. Run the same command again (or recording.run with the "
                                  "same arguments) to rewrite it.", file=self.path / name, chunk=0)


def load_run(path: PathLike, *, verify: bool = True) -> Recording:
    """Open a run written by :func:`run`, after checking its files against the checkpoint.

    Parameters
    ----------
    path : str or Path
        The output folder.
    verify : bool
        Read every finished chunk and compare it with its checksum (a second or so per GB).

    Raises
    ------
    DamagedRunError
        A file is missing, truncated or changed; the message names it and how to recompute it.
    """
    rec = Recording(Path(path))
    if verify:
        rec.verify()
    return rec


def _specs(meta: Dict[str, Any], geo: _Geometry) -> List[_FileSpec]:
    """The checksummed files: every recorded variable, then the chunk states."""
    specs = [_FileSpec(meta["files"][n], tuple(meta["shapes"][n]), np.dtype(meta["dtypes"][n]), geo.rows)
             for n in meta["files"]]
    specs.append(_FileSpec(STATES, (geo.n_chunks + 1, int(meta["state_bytes"])), np.dtype(np.uint8),
                           lambda c: (c + 1, c + 2)))
    return specs


def _verify_files(folder: Path, specs: Sequence[_FileSpec], ck: _Checkpoint) -> Dict[str, Tuple[int, str]]:
    """Damaged files, ``name -> (first bad chunk, what)``, the chunk states included."""
    index = {n: i for i, n in enumerate(ck.names)}
    problems = {}
    for spec in specs:
        if spec.name not in index:
            problems[spec.name] = (0, "has no checksums in the checkpoint")
            continue
        bad = _check_file(folder, spec, ck.crc[index[spec.name]])
        if bad is not None:
            problems[spec.name] = bad
    return problems


def _expected_times(meta: Dict[str, Any], geo: _Geometry) -> np.ndarray:
    return meta["dt"] * (np.arange(geo.n_rec, dtype=np.float64) * geo.every)  # exactly the solver grid's values


def _verify_fixed(folder: Path, meta: Dict[str, Any], geo: _Geometry) -> List[Tuple[str, str]]:
    """t.npy and arrays.npz, which are written once: compared with what they must hold."""
    bad = []
    try:
        if not np.array_equal(np.load(folder / TIMES, mmap_mode="r"), _expected_times(meta, geo)):
            bad.append((TIMES, "does not hold the run's recording times"))
    except (OSError, ValueError, EOFError) as exc:
        bad.append((TIMES, "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"))
    try:
        with np.load(folder / ARRAYS) as data:
            if _arrays_sha256({k: data[k] for k in data.files}) != meta["arrays_sha256"]:
                bad.append((ARRAYS, "does not hold the model's arrays"))
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many kinds
        bad.append((ARRAYS, "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"))
    return bad


def _run_files(meta: Dict[str, Any]) -> set:
    return {META, ARRAYS, TIMES, CHECKPOINT, STATES, LOCK} | set(meta.get("files", {}).values())


def _is_own_temporary(name: str, own: set) -> bool:
    """A temporary file of :func:`_write_atomic` for one of the run's files (``.NAME.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and name[1:].rsplit(".", 2)[0] in own


def _is_own(name: str, own: set) -> bool:
    """A file this kind of run writes (temporary files included)."""
    return name in own or _is_own_temporary(name, own)


def _remove_stale_temporaries(out: Path, own: set) -> None:
    """Remove the half-written temporary files of a run that was killed while it wrote (we hold the lock now)."""
    for p in out.iterdir():
        if _is_own_temporary(p.name, own) and p.is_file():
            p.unlink(missing_ok=True)


def _clear(out: Path, own: set) -> None:
    """Remove the files a run writes (the old run's and the new one's), nothing else."""
    for p in out.iterdir():
        if p.name != LOCK and _is_own(p.name, own) and p.is_file():
            p.unlink()


def _read_meta(out: Path) -> Tuple[Optional[Dict[str, Any]], bool]:
    """``(meta or None, whether a meta.json exists)``; an unreadable one counts as absent."""
    path = out / META
    if not path.exists():
        return None, False
    try:
        meta = json.loads(path.read_text())
        return (meta if isinstance(meta, dict) else None), True
    except (ValueError, OSError):
        return None, True


def _check_out(out: Path) -> None:
    """Refuse an output path that is a file or lies under one, with the path named."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"the output folder {out} is a file; give a folder path (it is created if needed)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputExistsError(f"the output folder {out} lies under {parent}, which is a file, not a folder")
            break


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


# -- the runner ------------------------------------------------------------------------------------

def _progress_bar(progress: Optional[bool], total_ms: float, done_ms: float):
    return progress_bar(progress, total=round(total_ms, 6), initial=round(done_ms, 6), unit="ms", desc="simulated",
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} ms [{elapsed}<{remaining}{postfix}]")  # tqdm puts the ", " before a postfix


def _check_chunk_ms(chunk_ms: Any) -> float:
    try:
        value = float(chunk_ms)
    except (TypeError, ValueError):
        raise ValueError(f"chunk_ms = {chunk_ms!r} must be a number of simulated ms per chunk, e.g. 100") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"chunk_ms = {value}: a chunk must end to be written to disk; give a finite number of "
                         "simulated ms per chunk, e.g. 100")
    if value <= 0:
        raise ValueError(f"chunk_ms = {value:g}: each chunk must advance the simulation, so it must be positive "
                         "(simulated ms per chunk, e.g. 100)")
    return value


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
        ``out`` is a file, lies under one, or holds something else than this run (without ``overwrite``).
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
    chunk_steps = max(every, int(round(chunk_ms / dt)) // every * every)
    geo = _Geometry(n_steps, every, chunk_steps)
    y0 = model.state(dtype)
    layout = _Layout.of(y0)
    rec_leaves, rec_def = flatten(checks.select(list(record), y0))
    names = [_leaf_name(p) for p in leaf_paths(rec_def)]  # e.g. "V", "syn.gaba"
    meta = {
        "format": FORMAT, "psst_version": __version__,
        "model": model.name, "params": model.params, "dt": dt, "duration_ms": duration_ms, "n_steps": n_steps,
        "every": every, "record": list(record), "dtype": dtype.name, "method": method, "chunk_steps": chunk_steps,
        "seed": seed if seed is not None else model.params.get("seed"),
        "arrays_sha256": _arrays_sha256(model.arrays),
        "state_layout": layout.describe(), "state_bytes": layout.nbytes,
        "files": {name: f"{name}.npy" for name in names},
        "shapes": {name: [geo.n_rec, *np.shape(x)] for name, x in zip(names, rec_leaves)},
        "dtypes": {name: np.asarray(x).dtype.name for name, x in zip(names, rec_leaves)},
    }
    meta["fingerprint"] = _fingerprint(meta)
    _check_out(out)

    # Refused before anything is written (no lock file in someone else's folder); checked again under the lock.
    previous, _ = _read_meta(out)
    _refuse_another_run(out, meta, previous, overwrite)
    # A finished, intact run is returned without writing anything (a read-only folder works).
    if not overwrite and (out / CHECKPOINT).exists():
        if previous is not None and previous.get("fingerprint") == meta["fingerprint"]:
            try:
                found, ck = _read_checkpoint(out / CHECKPOINT)
                intact = (found == meta["fingerprint"] and ck.next_step >= n_steps
                          and not set(_verify_files(out, _specs(previous, geo), ck)) - {STATES}
                          and not _verify_fixed(out, previous, geo))
            except CheckpointError:
                intact = False
            if intact:
                return Recording(out)

    total_ms = n_steps * dt
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(_named(exc, out), out, "nothing was written") from None
    lock = _FolderLock(out)
    try:
        lock.acquire()
    except OSError as exc:
        if isinstance(exc, RunLockedError):
            raise
        raise _write_error(_named(exc, out / LOCK), out, "the folder is unchanged") from None
    done_ms = 0.0
    try:
        start_step, state, crc, old_crc = _prepare(out, meta, model, y0, layout, geo, overwrite, names, rec_leaves)
        done_ms = start_step * dt
        integ = None
        bar = _progress_bar(progress, total_ms, done_ms)
        spec_names = [meta["files"][n] for n in names] + [STATES]
        chunks = 0
        try:
            while start_step < n_steps and (max_chunks is None or chunks < max_chunks):
                if integ is None:
                    from .solvers.tf_solver import Integrator

                    integ = Integrator(model.derivatives, method=method, record=list(record), every=every,
                                       post_step=model.post_step, xla=xla)
                c = start_step // chunk_steps
                stop = min(start_step + chunk_steps, n_steps)
                t_chunk = dt * np.arange(start_step, stop + 1, dtype=np.float64)
                wall = time.perf_counter()
                records, state = integ(state, t_chunk, return_final=True)
                column = []
                # Each chunk records its own first point, which is the previous chunk's last one:
                # drop it (the stitching pitfall of batching by hand); chunk 0 writes it, as row 0.
                for name, x in zip(names, flatten(records)[0]):
                    rows = np.asarray(x)
                    column.append(_write_rows(out / meta["files"][name], geo.rows(c)[0], rows if c == 0 else rows[1:]))
                state_np = [np.asarray(x) for x in flatten(state)[0]]
                state = unflatten(layout.treedef, state_np)
                column.append(_write_rows(out / STATES, c + 1, layout.to_bytes(state_np)[None]))
                column = np.array(column, dtype=np.uint32)
                if old_crc is not None and c < old_crc.shape[1]:
                    # a recomputed chunk must give the bytes it gave the first time (whatever is on disk now)
                    changed = [n for n, a, b in zip(spec_names, old_crc[:, c], column) if a != b]
                    if changed:
                        _notice(f"recomputed chunk {c} differs from the one computed before ({', '.join(changed)}); "
                                "another TensorFlow or NumPy version, or other hardware, gives other rounding")
                        old_crc = None
                crc = np.concatenate([crc[:, :c], column[:, None]], axis=1)
                _write_checkpoint(out / CHECKPOINT, meta["fingerprint"], stop, state_np, spec_names, crc)
                if bar is not None:
                    bar.update(round((stop - start_step) * dt, 6))
                    bar.set_postfix_str(f"{(stop - start_step) * dt / (time.perf_counter() - wall):.0f} sim-ms/s")
                start_step = stop
                done_ms = stop * dt
                chunks += 1
        finally:
            if bar is not None:
                bar.close()
    except OSError as exc:
        if isinstance(exc, PSSTError):
            raise
        kept = (f"the run on disk is intact up to {done_ms:g} of {total_ms:g} ms" if done_ms > 0
                else "nothing was computed yet")
        raise _write_error(exc, out, kept) from None
    finally:
        lock.release()
    return Recording(out)


def _refuse_another_run(out: Path, meta: Dict[str, Any], previous: Optional[Dict[str, Any]],
                        overwrite: bool) -> set:
    """Raise OutputExistsError if ``out`` holds another run or other files; return the run's own file names."""
    own = _run_files(meta) | (_run_files(previous) if previous else set())
    if overwrite or not out.is_dir():
        return own
    if previous is not None:
        if previous.get("fingerprint") != meta["fingerprint"]:
            raise OutputExistsError(f"{out} holds a different run: {_differences(previous, meta)} use another folder "
                                    "or pass overwrite=True (--overwrite) to replace it")
        return own
    foreign = [p.name for p in out.iterdir() if not _is_own(p.name, own)]
    if foreign:
        raise OutputExistsError(f"{out} exists and is not a psst run folder (it holds {sorted(foreign)[:3]}); "
                                "choose an empty folder or pass overwrite=True (--overwrite)")
    return own


def _prepare(out: Path, meta: Dict[str, Any], model: Any, y0: Any, layout: _Layout, geo: _Geometry,
             overwrite: bool, names: Sequence[str], rec_leaves: Sequence[Any]):
    """Under the lock: decide where to start, after clearing, verifying and repairing the folder.

    Returns ``(start_step, state, crc, old_crc)``: ``crc`` the checksums of the chunks kept, and
    ``old_crc`` those of chunks about to be recomputed (to notice a recomputation that differs).
    """
    previous, has_meta = _read_meta(out)
    own = _refuse_another_run(out, meta, previous, overwrite)
    n_specs = len(names) + 1
    empty = np.zeros((n_specs, 0), dtype=np.uint32)
    ck: Optional[_Checkpoint] = None
    if overwrite:
        _clear(out, own)
    if not overwrite and (out / CHECKPOINT).exists():
        if previous is None:  # meta.json deleted or damaged: trust the folder only if the checkpoint is ours
            found, _ = _read_checkpoint(out / CHECKPOINT)
            if found != meta["fingerprint"]:
                raise OutputExistsError(f"{out / META} is {'damaged' if has_meta else 'missing'} and the checkpoint "
                                        "belongs to another run; use another folder or pass overwrite=True "
                                        "(--overwrite)")
            _notice(f"{out / META} was {'damaged' if has_meta else 'missing'}: rewritten from the run's arguments")
        ck = _load_checkpoint(out / CHECKPOINT, meta["fingerprint"], layout)
    elif not overwrite and previous is not None and any((out / f).exists() for f in meta["files"].values()):
        _notice(f"{out} has no checkpoint (the run stopped before its first chunk, or {CHECKPOINT} was deleted): "
                "starting from the beginning")

    # Accepted: the half-written temporaries of a killed writer go (they are never read; we hold the lock).
    _remove_stale_temporaries(out, own)
    if previous is not None and previous.get("fingerprint") == meta["fingerprint"]:
        meta["created"] = previous.get("created")
        meta["versions"] = previous.get("versions")
        meta["resumed_with"] = previous.get("resumed_with", [])
    else:
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        meta["versions"] = _versions()
        meta["resumed_with"] = []
    specs = _specs(meta, geo)

    if ck is None:
        # a fresh start: every file anew
        _write_atomic(out / ARRAYS, lambda fh: np.savez(fh, **model.arrays))
        times = _expected_times(meta, geo)
        _write_atomic(out / TIMES, lambda fh: np.save(fh, times))
        for spec in specs:
            _create_npy(out / spec.name, spec.shape, spec.dtype)
        _write_rows(out / STATES, 0, layout.to_bytes(flatten(y0)[0])[None])
        _write_meta(out, meta)
        return 0, y0, empty, None

    # resuming: the versions in use now are stated if they differ from those the run started with
    now = _versions()
    if now != meta["versions"] and now not in meta["resumed_with"]:
        changed = ", ".join(f"{k} {meta['versions'].get(k)} -> {v}" for k, v in now.items()
                            if meta["versions"].get(k) != v)
        _notice(f"{out} is resumed with other software than it started with ({changed}); the rest of the run "
                "may differ from an uninterrupted run in the last bits")
        meta["resumed_with"] = meta["resumed_with"] + [{"step": ck.next_step, **now}]
    for name, what in _verify_fixed(out, meta, geo):
        _notice(f"{out / name} {what}: rewritten")
        if name == ARRAYS:
            _write_atomic(out / ARRAYS, lambda fh: np.savez(fh, **model.arrays))
        else:
            times = _expected_times(meta, geo)
            _write_atomic(out / TIMES, lambda fh: np.save(fh, times))
    _write_meta(out, meta)

    done = geo.chunks_done(ck.next_step)
    crc = ck.crc[:, :done] if ck.crc.shape == (n_specs, done) and ck.names == [s.name for s in specs] else None
    if crc is None:
        raise CheckpointError(f"the checkpoint {out / CHECKPOINT} does not list checksums for this run's files; "
                              "pass overwrite=True (--overwrite) to start again")
    problems = _verify_files(out, specs, ck)
    for spec in specs:  # full size again (a truncation beyond the written part loses nothing), or recreated
        _extend(out / spec.name, spec)
    state_problem = problems.pop(STATES, None)
    if not problems:
        if state_problem is not None:  # only the chunk states are damaged: keep the data, restore the last state
            _write_rows(out / STATES, done, layout.to_bytes(ck.state_leaves)[None])
        return ck.next_step, unflatten(layout.treedef, ck.state_leaves), crc, None

    first = min(c for c, _ in problems.values())
    # the latest chunk boundary at or before the damage whose saved state is intact
    usable = done if state_problem is None else state_problem[0]
    restart = min(first, usable)
    if restart == 0:
        state = y0
    else:
        with open(out / STATES, "rb") as fh:
            _read_header(fh)
            fh.seek(fh.tell() + restart * layout.nbytes)
            state = layout.from_bytes(np.frombuffer(fh.read(layout.nbytes), dtype=np.uint8))
    start_step = restart * geo.chunk_steps
    for name, (c, what) in sorted(problems.items()):
        a, b = geo.steps(c)
        where = "" if what == "is missing" else f" (chunk {c}, {a * meta['dt']:g}-{b * meta['dt']:g} ms)"
        _notice(f"{out / name} {what}{where}: recomputing from {start_step * meta['dt']:g} ms, the last intact "
                "chunk boundary")
    return start_step, state, crc[:, :restart], crc


def _write_meta(out: Path, meta: Dict[str, Any]) -> None:
    """Write meta.json only if it would change (a finished run in a read-only folder needs no write)."""
    text = json.dumps(meta, indent=1, default=str)
    try:
        if (out / META).read_text() == text:
            return
    except (OSError, ValueError):
        pass
    _write_atomic(out / META, lambda fh: fh.write(text.encode()))
