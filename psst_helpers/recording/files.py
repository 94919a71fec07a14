"""Durable files of a run folder: atomic replacement, .npy files written in place by rows, CRC-32 checksums
of each chunk's rows, fsync of files and folders (chapter 5). And :class:`RunNotice`, the warning for
what a run repairs on its own."""
from __future__ import annotations

import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np


class RunNotice(UserWarning):
    """Something :func:`run` did on its own that the user should know about (a repair, a taken-over lock)."""


def notice(message: str) -> None:
    warnings.warn(message, RunNotice, stacklevel=3)


def fsync_dir(folder: Path) -> None:
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


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name if it has none."""
    if exc.filename is None:
        exc.filename = str(path)
    return exc


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
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
        raise named(exc, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def is_temporary_of(name: str, own: set) -> bool:
    """A temporary file of :func:`write_atomic` for one of the files in ``own`` (``.NAME.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and name[1:].rsplit(".", 2)[0] in own


def read_header(fh) -> Tuple[Tuple[int, ...], np.dtype]:
    major, _ = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if fortran:
        raise ValueError("Fortran order")
    return tuple(shape), dtype


def create_npy(path: Path, shape: Tuple[int, ...], dtype: np.dtype) -> None:
    """Create a .npy file of the final shape without holding it in memory (the data part is sparse)."""
    try:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                      "fortran_order": False, "shape": tuple(shape)})
            fh.truncate(fh.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise named(exc, path)


def write_rows(path: Path, start_row: int, rows: np.ndarray) -> int:
    """Write ``rows`` into the .npy file at ``path`` from row ``start_row``, fsync; return their CRC-32."""
    try:
        with open(path, "r+b") as fh:
            shape, dtype = read_header(fh)
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            data = np.ascontiguousarray(rows, dtype=dtype).tobytes()
            fh.seek(fh.tell() + start_row * row_bytes)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the checkpoint that covers it
    except OSError as exc:
        raise named(exc, path)
    return zlib.crc32(data)


@dataclass(frozen=True)
class FileSpec:
    """A checksummed file: its array shape and dtype, and which rows chunk ``c`` writes."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    rows: Callable[[int], Tuple[int, int]]


def check_file(folder: Path, spec: FileSpec, crcs: Sequence[int]) -> Optional[Tuple[int, str]]:
    """``None`` if the file holds the checksummed chunks, else ``(first bad chunk, what is wrong)``."""
    path = folder / spec.name
    if not path.is_file():
        return 0, "is missing"
    try:
        with open(path, "rb") as fh:
            try:
                shape, dtype = read_header(fh)
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


def extend(path: Path, spec: FileSpec) -> None:
    """Give a (truncated) .npy file its full size again, or create it if it is missing or malformed."""
    try:
        with open(path, "r+b") as fh:
            if read_header(fh) == (spec.shape, spec.dtype):
                full = fh.tell() + int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
                if os.fstat(fh.fileno()).st_size != full:
                    fh.truncate(full)
                    os.fsync(fh.fileno())
                return
    except (OSError, ValueError):
        pass
    create_npy(path, spec.shape, spec.dtype)
