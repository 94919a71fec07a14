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

    meta.json          model (its structure), parameters, dt, duration, seed, recorded variables, versions
    arrays.npz         the arrays that define the model (connectivity, stimulated neurons)
    t.npy              the recorded times (ms)
    V.npy, ...         one file per recorded variable, shape (len(t), ...); nested names use '.'
    chunk_states.npy   the full state at every chunk boundary (raw bytes), to recompute from there
    checkpoint.npz     the state after the last finished chunk, the step reached, the checksums
    run.lock           only while a run writes the folder (a second run is refused meanwhile)

The parts: :mod:`.files` (durable writes, checksums), :mod:`.layout` (state as bytes, chunks as rows),
:mod:`.checkpoint` (checkpoint, folder lock), :mod:`.folder` (what a folder holds, its fingerprint,
:class:`Recording`, verification, repair), :mod:`.runner` (:func:`run`).

Peak memory does not grow with the duration: one chunk of records is in memory at a time, and
the files are written with ordinary writes (a memory map would count its dirty pages in RSS).
"""
from ..errors import CheckpointError, DamagedRunError, OutputExistsError, RunLockedError, RunWriteError
from .files import RunNotice
from .folder import Recording, load_run
from .runner import run

__all__ = ["run", "Recording", "load_run", "CheckpointError", "OutputExistsError", "DamagedRunError",
           "RunLockedError", "RunWriteError", "RunNotice"]
