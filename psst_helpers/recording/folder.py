"""A run folder: what it holds (meta.json, the files and their shapes), the fingerprint that binds it to
one run (the model's structure, its start state, the grid, the recording), :class:`Recording` and
:func:`load_run`, verification against the checkpoint, and the repairs a resume makes (chapter 5)."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import __version__
from .._tree import flatten, leaf_paths, unflatten
from ..components import differences as structure_differences
from ..errors import CheckpointError, DamagedRunError, OutputExistsError
from ..solvers import checks
from .checkpoint import Checkpoint, load_checkpoint, read_checkpoint
from .files import FileSpec, check_file, create_npy, extend, is_temporary_of, notice, write_atomic, write_rows
from .layout import Geometry, Layout

PathLike = Union[str, os.PathLike]
CHECKPOINT = "checkpoint.npz"
META = "meta.json"
TIMES = "t.npy"
ARRAYS = "arrays.npz"
STATES = "chunk_states.npy"
LOCK = "run.lock"
FORMAT = 2  # folder layout: 2 = checksummed chunks and chunk states

#: What determines the numbers in the files (the package version included); a folder is resumed only
#: by a run that agrees on all of them.
FINGERPRINT_KEYS = ("format", "psst_version", "model", "structure", "start_sha256", "params", "dt", "n_steps",
                    "every", "record", "dtype", "method", "chunk_steps", "state_layout", "arrays_sha256")
_NAMES = {"structure": "the model's structure", "start_sha256": "the start state (values, or inputs such as "
          "amplitudes and conductances)", "arrays_sha256": "the model's arrays"}


def arrays_sha256(arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    return h.hexdigest()


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def differences(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    """What makes the run in a folder (``old``, its meta) another run than ``new``, for a message."""
    if old.get("format") != new["format"]:
        return (f"it was written by psst_helpers {(old.get('versions') or {}).get('psst_helpers', '?')} in an older "
                "folder layout without checksums, which this version cannot verify or resume;")
    if old.get("psst_version") != new["psst_version"]:
        return (f"it was written by psst_helpers {old.get('psst_version') or (old.get('versions') or {}).get('psst_helpers', '?')}"
                f" and this is {new['psst_version']}, whose kernels may give other numbers, so the two cannot be "
                "joined; finish it with the version that started it, or")
    if "structure" not in old:
        return ("it was written before run folders recorded the model's structure and start state, so this "
                "version cannot tell whether the model is the same;")
    diff = []
    for k in (k for k in FINGERPRINT_KEYS if _json(old.get(k)) != _json(new.get(k))):
        lines = structure_differences(_json(old.get(k)), _json(new.get(k))) if k == "structure" else []
        diff.append(_NAMES.get(k, k) + (f" ({'; '.join(lines[:5])}{'; ...' if len(lines) > 5 else ''})"
                                        if lines else ""))
    return "it differs in " + ", ".join(diff) + ";" if diff else "it was made differently;"


def _code_sha256() -> str:
    """Hash of the package's source: an edited (development) install changes it without a new version."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def versions() -> Dict[str, str]:
    import tensorflow as tf

    return {"psst_helpers": __version__, "psst_helpers_code": _code_sha256(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "python": platform.python_version()}


def new_meta(model: Any, y0: Any, layout: Layout, geo: Geometry, *, dt: float, duration_ms: float,
             record: Sequence[str], dtype: np.dtype, method: str, seed: Optional[int]) -> Dict[str, Any]:
    """The meta.json of a run of ``model`` from ``y0`` (its files, shapes, fingerprint), before it is written."""
    rec_leaves, rec_def = flatten(checks.select(list(record), y0))
    # a file per recorded leaf: "['syn']['gaba']" -> "syn.gaba"
    names = [".".join(p.strip("'\"") for p in path.strip("[]").split("][")) for path in leaf_paths(rec_def)]
    meta = {
        "format": FORMAT, "psst_version": __version__,
        "model": model.name, "structure": _json(model.structure()), "params": model.params, "dt": dt,
        "duration_ms": duration_ms, "n_steps": geo.n_steps, "every": geo.every, "record": list(record),
        "dtype": dtype.name, "method": method, "chunk_steps": geo.chunk_steps,
        "seed": seed if seed is not None else model.params.get("seed"),
        "arrays_sha256": arrays_sha256(model.arrays),
        "start_sha256": hashlib.sha256(layout.to_bytes(flatten(y0)[0]).tobytes()).hexdigest(),
        "state_layout": layout.describe(), "state_bytes": layout.nbytes,
        "files": {name: f"{name}.npy" for name in names},
        "shapes": {name: [geo.n_rec, *np.shape(x)] for name, x in zip(names, rec_leaves)},
        "dtypes": {name: np.asarray(x).dtype.name for name, x in zip(names, rec_leaves)},
    }
    blob = json.dumps({k: meta[k] for k in FINGERPRINT_KEYS}, sort_keys=True, default=str)
    meta["fingerprint"] = hashlib.sha256(blob.encode()).hexdigest()
    return meta


def _geometry(meta: Dict[str, Any]) -> Geometry:
    return Geometry(meta["n_steps"], meta["every"], meta["chunk_steps"])


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
        return read_checkpoint(ck)[1].next_step if ck.exists() else 0

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
            notice(f"{self.path} was written by psst_helpers "
                   f"{(meta.get('versions') or {}).get('psst_helpers', '?')} without checksums; "
                   "its data cannot be verified")
            return
        ck_path = self.path / CHECKPOINT
        if not ck_path.exists():
            return  # nothing computed yet (steps_done is 0): no rows to verify
        found, ck = read_checkpoint(ck_path)
        if found != meta["fingerprint"]:
            raise DamagedRunError(f"{ck_path} belongs to another run than {self.path / META}; the folder mixes two "
                                  "runs: rerun with overwrite=True (--overwrite)", file=ck_path, chunk=0)
        problems = verify_files(self.path, specs(meta), ck)
        problems.pop(STATES, None)  # only needed to recompute; the data itself is intact
        extra = verify_fixed(self.path, meta)
        if problems:
            name, (chunk, what) = min(problems.items(), key=lambda kv: kv[1][0])
            start, stop = _geometry(meta).steps(chunk)
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


def specs(meta: Dict[str, Any]) -> List[FileSpec]:
    """The checksummed files: every recorded variable, then the chunk states."""
    geo = _geometry(meta)
    out = [FileSpec(meta["files"][n], tuple(meta["shapes"][n]), np.dtype(meta["dtypes"][n]), geo.rows)
           for n in meta["files"]]
    out.append(FileSpec(STATES, (geo.n_chunks + 1, int(meta["state_bytes"])), np.dtype(np.uint8),
                        lambda c: (c + 1, c + 2)))
    return out


def verify_files(folder: Path, specs: Sequence[FileSpec], ck: Checkpoint) -> Dict[str, Tuple[int, str]]:
    """Damaged files, ``name -> (first bad chunk, what)``, the chunk states included."""
    index = {n: i for i, n in enumerate(ck.names)}
    found = {s.name: check_file(folder, s, ck.crc[index[s.name]]) if s.name in index
             else (0, "has no checksums in the checkpoint") for s in specs}
    return {name: what for name, what in found.items() if what is not None}


def expected_times(meta: Dict[str, Any]) -> np.ndarray:
    geo = _geometry(meta)
    return meta["dt"] * (np.arange(geo.n_rec, dtype=np.float64) * geo.every)  # exactly the solver grid's values


def verify_fixed(folder: Path, meta: Dict[str, Any]) -> List[Tuple[str, str]]:
    """t.npy and arrays.npz, which are written once: compared with what they must hold."""
    bad = []
    try:
        if not np.array_equal(np.load(folder / TIMES, mmap_mode="r"), expected_times(meta)):
            bad.append((TIMES, "does not hold the run's recording times"))
    except (OSError, ValueError, EOFError) as exc:
        bad.append((TIMES, "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"))
    try:
        with np.load(folder / ARRAYS) as data:
            if arrays_sha256({k: data[k] for k in data.files}) != meta["arrays_sha256"]:
                bad.append((ARRAYS, "does not hold the model's arrays"))
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many kinds
        bad.append((ARRAYS, "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"))
    return bad


def _run_files(meta: Dict[str, Any]) -> set:
    return {META, ARRAYS, TIMES, CHECKPOINT, STATES, LOCK} | set(meta.get("files", {}).values())


def _is_own(name: str, own: set) -> bool:
    """A file this kind of run writes (temporary files included)."""
    return name in own or is_temporary_of(name, own)


def read_meta(out: Path) -> Tuple[Optional[Dict[str, Any]], bool]:
    """``(meta or None, whether a meta.json exists)``; an unreadable one counts as absent."""
    path = out / META
    if not path.exists():
        return None, False
    try:
        meta = json.loads(path.read_text())
        return (meta if isinstance(meta, dict) else None), True
    except (ValueError, OSError):
        return None, True


def check_out(out: Path) -> None:
    """Refuse an output path that is a file or lies under one, with the path named."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"the output folder {out} is a file; give a folder path (it is created if needed)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputExistsError(f"the output folder {out} lies under {parent}, which is a file, not a folder")
            break


def refuse_another_run(out: Path, meta: Dict[str, Any], previous: Optional[Dict[str, Any]], overwrite: bool) -> set:
    """Raise OutputExistsError if ``out`` holds another run or other files; return the run's own file names."""
    own = _run_files(meta) | (_run_files(previous) if previous else set())
    if overwrite or not out.is_dir():
        return own
    if previous is not None:
        if previous.get("fingerprint") != meta["fingerprint"]:
            raise OutputExistsError(f"{out} holds a different run: {differences(previous, meta)} use another folder "
                                    "or pass overwrite=True (--overwrite) to replace it")
        return own
    foreign = [p.name for p in out.iterdir() if not _is_own(p.name, own)]
    if foreign:
        raise OutputExistsError(f"{out} exists and is not a psst run folder (it holds {sorted(foreign)[:3]}); "
                                "choose an empty folder or pass overwrite=True (--overwrite)")
    return own


def prepare(out: Path, meta: Dict[str, Any], model: Any, y0: Any, layout: Layout, overwrite: bool):
    """Under the lock: decide where to start, after clearing, verifying and repairing the folder.

    Returns ``(start_step, state, crc, old_crc)``: ``crc`` the checksums of the chunks kept, and
    ``old_crc`` those of chunks about to be recomputed (to notice a recomputation that differs).
    """
    previous, has_meta = read_meta(out)
    own = refuse_another_run(out, meta, previous, overwrite)
    ck: Optional[Checkpoint] = None
    if overwrite:  # the files a run writes (the old run's and the new one's) go, nothing else
        for p in out.iterdir():
            if p.name != LOCK and _is_own(p.name, own) and p.is_file():
                p.unlink()
    if not overwrite and (out / CHECKPOINT).exists():
        if previous is None:  # meta.json deleted or damaged: trust the folder only if the checkpoint is ours
            found, _ = read_checkpoint(out / CHECKPOINT)
            if found != meta["fingerprint"]:
                raise OutputExistsError(f"{out / META} is {'damaged' if has_meta else 'missing'} and the checkpoint "
                                        "belongs to another run; use another folder or pass overwrite=True "
                                        "(--overwrite)")
            notice(f"{out / META} was {'damaged' if has_meta else 'missing'}: rewritten from the run's arguments")
        ck = load_checkpoint(out / CHECKPOINT, meta["fingerprint"], layout)
    elif not overwrite and previous is not None and any((out / f).exists() for f in meta["files"].values()):
        notice(f"{out} has no checkpoint (the run stopped before its first chunk, or {CHECKPOINT} was deleted): "
               "starting from the beginning")

    # Accepted: the half-written temporaries of a killed writer go (they are never read; we hold the lock).
    for p in out.iterdir():
        if is_temporary_of(p.name, own) and p.is_file():
            p.unlink(missing_ok=True)
    kept = previous if previous is not None and previous.get("fingerprint") == meta["fingerprint"] else {}
    meta["created"] = kept.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["versions"] = kept.get("versions") or versions()
    meta["resumed_with"] = kept.get("resumed_with", [])
    files, geo = specs(meta), _geometry(meta)

    if ck is None:  # a fresh start: every file anew
        _write_fixed(out, meta, model, ARRAYS)
        _write_fixed(out, meta, model, TIMES)
        for spec in files:
            create_npy(out / spec.name, spec.shape, spec.dtype)
        write_rows(out / STATES, 0, layout.to_bytes(flatten(y0)[0])[None])
        write_meta(out, meta)
        return 0, y0, np.zeros((len(files), 0), dtype=np.uint32), None

    # resuming: the versions in use now are stated if they differ from those the run started with
    now = versions()
    if now != meta["versions"] and now not in meta["resumed_with"]:
        changed = ", ".join(f"{k} {meta['versions'].get(k)} -> {v}" for k, v in now.items()
                            if meta["versions"].get(k) != v)
        notice(f"{out} is resumed with other software than it started with ({changed}); the rest of the run "
               "may differ from an uninterrupted run in the last bits")
        meta["resumed_with"] = meta["resumed_with"] + [{"step": ck.next_step, **now}]
    for name, what in verify_fixed(out, meta):
        notice(f"{out / name} {what}: rewritten")
        _write_fixed(out, meta, model, name)
    write_meta(out, meta)

    done = geo.chunks_done(ck.next_step)
    if ck.crc.shape != (len(files), done) or ck.names != [s.name for s in files]:
        raise CheckpointError(f"the checkpoint {out / CHECKPOINT} does not list checksums for this run's files; "
                              "pass overwrite=True (--overwrite) to start again")
    problems = verify_files(out, files, ck)
    for spec in files:  # full size again (a truncation beyond the written part loses nothing), or recreated
        extend(out / spec.name, spec)
    state_problem = problems.pop(STATES, None)
    if not problems:
        if state_problem is not None:  # only the chunk states are damaged: keep the data, restore the last state
            write_rows(out / STATES, done, layout.to_bytes(ck.state_leaves)[None])
        return ck.next_step, unflatten(layout.treedef, ck.state_leaves), ck.crc, None

    # back to the latest chunk boundary at or before the damage whose saved state is intact
    restart = min(min(c for c, _ in problems.values()), done if state_problem is None else state_problem[0])
    state = y0 if restart == 0 else layout.from_bytes(np.load(out / STATES, mmap_mode="r")[restart])
    start_step = restart * geo.chunk_steps
    for name, (c, what) in sorted(problems.items()):
        a, b = geo.steps(c)
        where = "" if what == "is missing" else f" (chunk {c}, {a * meta['dt']:g}-{b * meta['dt']:g} ms)"
        notice(f"{out / name} {what}{where}: recomputing from {start_step * meta['dt']:g} ms, the last intact "
               "chunk boundary")
    return start_step, state, ck.crc[:, :restart], ck.crc


def _write_fixed(out: Path, meta: Dict[str, Any], model: Any, name: str) -> None:
    """(Re)write ``name``, arrays.npz or t.npy: the files written once."""
    write_atomic(out / name, (lambda fh: np.savez(fh, **model.arrays)) if name == ARRAYS
                 else (lambda fh: np.save(fh, expected_times(meta))))


def write_meta(out: Path, meta: Dict[str, Any]) -> None:
    """Write meta.json only if it would change (a finished run in a read-only folder needs no write)."""
    text = json.dumps(meta, indent=1, default=str)
    try:
        if (out / META).read_text() == text:
            return
    except (OSError, ValueError):
        pass
    write_atomic(out / META, lambda fh: fh.write(text.encode()))
