"""How a run is laid out in rows: the state as one row of bytes (any tree of arrays, leaves of any dtypes),
and which steps and record rows each chunk covers (chapter 5)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

import numpy as np

from .._tree import flatten, leaf_paths, unflatten


@dataclass(frozen=True)
class Layout:
    """Paths, dtypes and shapes of the state's leaves: how a state is turned into one row of bytes."""

    treedef: Any
    paths: Tuple[str, ...]
    dtypes: Tuple[np.dtype, ...]
    shapes: Tuple[Tuple[int, ...], ...]

    @classmethod
    def of(cls, state: Any) -> "Layout":
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


@dataclass(frozen=True)
class Geometry:
    """``n_steps`` split into chunks of ``chunk_steps``, recorded every ``every``-th step."""

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
