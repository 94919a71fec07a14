"""The checkpoint (the state reached, the step, the checksums of every chunk of every file), written
atomically after the data it covers, and the folder lock: one writer per run folder (chapter 5)."""
from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import CheckpointError, RunLockedError
from .files import notice, write_atomic
from .layout import Layout

try:  # advisory locks that the kernel releases when the process dies (POSIX)
    import fcntl
except ImportError:  # pragma: no cover - Windows: the lock falls back to the PID written in it
    fcntl = None


@dataclass
class Checkpoint:
    next_step: int
    state_leaves: List[np.ndarray]
    names: List[str]       # checksummed files, in the rows' order of ``crc``
    crc: np.ndarray        # uint32 (len(names), chunks done)


def read_checkpoint(path: Path) -> Tuple[str, Checkpoint]:
    """``(fingerprint, checkpoint)``; CheckpointError if the file cannot be read."""
    try:
        with np.load(path) as data:
            found = str(data["__fingerprint"])
            step = int(data["__next_step"])
            names = [str(x) for x in data["__crc_names"]] if "__crc_names" in data.files else []
            crc = np.array(data["__crc"]) if "__crc" in data.files else np.zeros((0, 0), np.uint32)
            leaves = [np.array(data[f"leaf{i}"]) for i in range(sum(k.startswith("leaf") for k in data.files))]
    except Exception as exc:  # zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError ...
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); it is corrupt or truncated. "
            "Delete it to restart from the beginning, or pass overwrite=True (--overwrite)."
        ) from None
    return found, Checkpoint(step, leaves, names, crc)


def load_checkpoint(path: Path, fingerprint: str, layout: Layout) -> Checkpoint:
    found, ck = read_checkpoint(path)
    if found != fingerprint or [(x.dtype, x.shape) for x in ck.state_leaves] != list(zip(layout.dtypes, layout.shapes)):
        raise CheckpointError(f"the checkpoint {path} belongs to a different run (model, start state, parameters, dt, "
                              "duration, recording, chunking or psst_helpers version differ); use another output "
                              "folder or overwrite=True (--overwrite)")
    return ck


def write_checkpoint(path: Path, fingerprint: str, next_step: int, leaves: Sequence[np.ndarray],
                     names: Sequence[str], crc: np.ndarray) -> None:
    ck = {f"leaf{i}": x for i, x in enumerate(leaves)}
    ck.update(__next_step=np.int64(next_step), __fingerprint=np.array(fingerprint),
              __crc_names=np.array(list(names)), __crc=np.asarray(crc, dtype=np.uint32))
    write_atomic(path, lambda fh: np.savez(fh, **ck))


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


class FolderLock:
    """The lock file ``path`` (``run.lock``): one writer per folder. The kernel drops the lock when its
    holder dies (flock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> None:
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
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            if pid is not None:
                why = ("it no longer runs (killed or crashed)" if not _pid_alive(pid) or host != socket.gethostname()
                       else "that process id now belongs to another program")
                notice(f"{self.path} was left by process {pid} on {host}, and {why}; this run takes it over")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}".encode(), 0)
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
