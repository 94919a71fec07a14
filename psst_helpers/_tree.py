"""Nested state structures ("trees") shared by the NumPy and TensorFlow solvers.

A state may be a single array, or any nesting of ``dict``, ``list`` and ``tuple`` whose leaves
are arrays (or tensors).  ``flatten`` returns the leaves in a fixed order (dict keys sorted, as
``tf.nest`` does) together with a ``TreeDef`` that rebuilds the structure.  ``None`` is a leaf
too: a derivative function returns ``None`` for a state entry that is not integrated (for
example a neuron's last spike time, which only a post-step hook changes).

Written by hand rather than with ``tf.nest`` so that the NumPy path (chapter 1) never needs
TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Sequence, Tuple

__all__ = ["TreeDef", "flatten", "unflatten", "leaf_paths", "tree_map"]


@dataclass(frozen=True)
class TreeDef:
    """The shape of a nested structure without its leaves."""

    kind: str  # "leaf", "dict", "list" or "tuple"
    keys: Tuple[Any, ...] = ()
    children: Tuple["TreeDef", ...] = ()

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)


_LEAF = TreeDef("leaf")


def flatten(tree: Any) -> Tuple[List[Any], TreeDef]:
    """Return ``(leaves, treedef)`` for a nested dict/list/tuple structure."""
    if isinstance(tree, dict):
        keys = tuple(sorted(tree.keys(), key=str))
        leaves: List[Any] = []
        defs = []
        for k in keys:
            sub, d = flatten(tree[k])
            leaves.extend(sub)
            defs.append(d)
        return leaves, TreeDef("dict", keys, tuple(defs))
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        leaves = []
        defs = []
        for item in tree:
            sub, d = flatten(item)
            leaves.extend(sub)
            defs.append(d)
        kind = "list" if isinstance(tree, list) else "tuple"
        return leaves, TreeDef(kind, tuple(range(len(tree))), tuple(defs))
    return [tree], _LEAF


def unflatten(treedef: TreeDef, leaves: Sequence[Any]) -> Any:
    """Inverse of :func:`flatten`."""
    it = iter(leaves)

    def build(d: TreeDef) -> Any:
        if d.kind == "leaf":
            return next(it)
        items = [build(c) for c in d.children]
        if d.kind == "dict":
            return dict(zip(d.keys, items))
        return list(items) if d.kind == "list" else tuple(items)

    out = build(treedef)
    return out


def leaf_paths(treedef: TreeDef) -> List[str]:
    """Human-readable path of every leaf, e.g. ``"['syn']['gaba']"``; ``"y"`` for a bare array."""
    paths: List[str] = []

    def walk(d: TreeDef, prefix: str) -> None:
        if d.kind == "leaf":
            paths.append(prefix or "y")
            return
        for k, c in zip(d.keys, d.children):
            walk(c, f"{prefix}[{k!r}]")

    walk(treedef, "")
    return paths


def tree_map(fn: Callable[[Any], Any], tree: Any) -> Any:
    """Apply ``fn`` to every leaf (``None`` leaves are passed through untouched)."""
    leaves, d = flatten(tree)
    return unflatten(d, [None if x is None else fn(x) for x in leaves])
