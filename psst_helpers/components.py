"""Model parts and what a compiled loop may share: structure derived, never written by hand.

A model is built from parts — stimuli (:mod:`psst_helpers.stimuli`), synapse kinds and groups
(:mod:`psst_helpers.synapses`), channels (:mod:`psst_helpers.channels`) — each one class deriving
from :class:`Component`. A part's numbers fall in two sets:

* **inputs**: values the compiled loop takes as arguments (conductances, reversal potentials,
  stimulus amplitudes). The class names them once, in ``inputs = ("g", "E")``; a sweep over them
  reuses one compiled loop.
* **structure**: everything else — every other attribute, and the code of the class itself. A
  compiled loop bakes it in, so two models share a loop only when their structure is equal.

The structure is *derived* from the instance by :func:`fingerprint`, never listed by hand: numbers,
strings, arrays (by content), lists, tuples, dicts and nested components are read as they are; a
function or a class by its code (bytecode, constants, defaults and closure). A value the package
cannot read (an open file, a tensor, an object of an unknown C type) makes the part *unshared*: it
then never shares a compiled loop with another instance. So a reader's own component — a sine
current whose frequency is an attribute, a new channel — is safe without declaring anything, and
one that declares its inputs shares loops exactly as the built-in parts do.

The same description names what differs when a run folder is resumed with another model
(:func:`differences`).
"""
from __future__ import annotations

import hashlib
import types
from typing import Any, ClassVar, Dict, List, Tuple

import numpy as np

__all__ = ["Component", "fingerprint", "describe", "differences", "Unshared"]


class Unshared:
    """Marks a value :func:`fingerprint` cannot read; the part holding it is unique to its instance."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj  # keeps the object alive, so its id is not reused while a cache key holds this

    def __repr__(self) -> str:
        return f"<unshared {type(self.obj).__qualname__} at {id(self.obj):#x}>"


# -- the derived description -----------------------------------------------------------------------

_PACKAGE = __name__.rsplit(".", 1)[0]


def _code_description(code: types.CodeType, seen: set) -> List[Any]:
    consts = []
    for c in code.co_consts:
        consts.append(_code_description(c, seen) if isinstance(c, types.CodeType) else _plain(c, seen))
    return ["code", code.co_name, code.co_code.hex(), consts, list(code.co_names)]


def _function_description(fn: Any, seen: set) -> List[Any]:
    fn = getattr(fn, "__func__", fn)  # bound and class methods: the function
    if not isinstance(fn, types.FunctionType):
        return ["callable", type(fn).__module__, type(fn).__qualname__, getattr(fn, "__qualname__", repr(fn))]
    closure = [_plain(c.cell_contents, seen) for c in (fn.__closure__ or ()) if _cell_filled(c)]
    # module-level numbers and arrays the function reads (e.g. a capacity constant): part of what it bakes in
    glob = []
    for name in sorted(set(_global_names(fn.__code__))):
        if name in fn.__globals__:
            value = fn.__globals__[name]
            if isinstance(value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic, tuple)):
                glob.append([name, _plain(value, seen)])
    return ["function", fn.__module__, fn.__qualname__, _code_description(fn.__code__, seen),
            _plain(fn.__defaults__, seen), _plain(fn.__kwdefaults__, seen), closure, glob]


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _global_names(code: types.CodeType) -> List[str]:
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.extend(_global_names(c))
    return names


def _class_description(cls: type, seen: set) -> List[Any]:
    """A class by its name and the code of what it defines, along its bases up to :class:`Component`."""
    out: List[Any] = ["class", cls.__module__, cls.__qualname__]
    for klass in cls.__mro__:
        if klass in (object, Component):
            break
        body = []
        for name, value in sorted(vars(klass).items()):
            if name.startswith("__") and name not in ("__call__", "__post_init__", "__init__"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
                body.append([name, _function_description(value, seen)])
            elif not isinstance(value, (types.MemberDescriptorType, types.GetSetDescriptorType)):
                body.append([name, _plain(value, seen)])
        out.append([klass.__module__, klass.__qualname__, body])
    return out


def _plain(x: Any, seen: set) -> Any:
    """``x`` as nested lists of numbers and strings, or an :class:`Unshared` marker."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else repr(float(x))
    if isinstance(x, (complex, np.complexfloating)):
        return ["complex", repr(complex(x))]
    if isinstance(x, bytes):
        return ["bytes", hashlib.sha256(x).hexdigest()]
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return ["object array", list(x.shape), [_plain(v, seen) for v in x.ravel()]]
        data = np.ascontiguousarray(x)
        # small arrays as values (readable in a difference report), large ones by digest
        if data.size <= 16:
            return ["array", str(data.dtype), list(data.shape), [_plain(v, seen) for v in data.ravel()]]
        return ["array", str(data.dtype), list(data.shape), hashlib.sha256(data.tobytes()).hexdigest()]
    if isinstance(x, np.dtype):
        return ["dtype", str(x)]
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, [_plain(v, seen) for v in x]]
    if isinstance(x, (set, frozenset)):
        return ["set", sorted((_plain(v, seen) for v in x), key=repr)]
    if isinstance(x, dict):
        return ["dict", [[_plain(k, seen), _plain(v, seen)] for k, v in sorted(x.items(), key=lambda kv: repr(kv[0]))]]
    if id(x) in seen:  # a cycle: name it, do not follow it
        return ["cycle", type(x).__qualname__]
    if isinstance(x, type) and x.__module__ == "builtins":
        # a built-in class (dict, a dataclass's default_factory): by name; its methods are C code
        return ["class", x.__module__, x.__qualname__]
    if isinstance(x, (types.MethodDescriptorType, types.WrapperDescriptorType, types.MethodWrapperType,
                      types.ClassMethodDescriptorType, types.GetSetDescriptorType, types.MemberDescriptorType)):
        return ["builtin", getattr(x, "__objclass__", type(x)).__qualname__, getattr(x, "__name__", "")]
    if isinstance(x, types.BuiltinFunctionType):
        return ["builtin", getattr(x, "__module__", None) or "", x.__qualname__]
    if isinstance(x, type):
        seen = seen | {id(x)}
        return _class_description(x, seen)
    if isinstance(x, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, staticmethod, classmethod)):
        return _function_description(x, seen | {id(x)})
    if isinstance(x, (types.ModuleType,)):
        return ["module", x.__name__]
    if isinstance(x, Component):
        return x._description(seen | {id(x)})
    if type(x).__module__ == "numpy" or type(x).__module__.startswith(("tensorflow", "tf")):
        return Unshared(x)
    if hasattr(x, "__dict__") and not callable(getattr(type(x), "__array__", None)):
        seen = seen | {id(x)}
        return ["object", _class_description(type(x), seen),
                [[k, _plain(v, seen)] for k, v in sorted(vars(x).items())]]
    return Unshared(x)


def _has_unshared(x: Any) -> bool:
    if isinstance(x, Unshared):
        return True
    if isinstance(x, list):
        return any(_has_unshared(v) for v in x)
    return False


def _jsonable(x: Any) -> Any:
    if isinstance(x, Unshared):
        return repr(x)
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def fingerprint(*parts: Any) -> Tuple[str, ...]:
    """A hashable key for ``parts``: equal exactly when their structure (values and code) is equal.

    Parts holding a value that cannot be read (:class:`Unshared`) get a key of their own object
    identity as well, so they never share with another instance.
    """
    plain = _plain(list(parts), set())
    digest = hashlib.sha256(repr(_jsonable(plain)).encode()).hexdigest()
    unshared = tuple(str(id(u.obj)) for u in _walk_unshared(plain))
    return (digest,) + unshared


def _walk_unshared(x: Any):
    if isinstance(x, Unshared):
        yield x
    elif isinstance(x, list):
        for v in x:
            yield from _walk_unshared(v)


def describe(part: Any) -> Any:
    """A JSON-friendly, readable description of a part's structure (for run metadata and messages).

    Components and plain objects become ``{"type": ..., attribute: value, ...}`` (their inputs left
    out); arrays larger than 16 entries appear by shape, dtype and SHA-256 digest; code by a digest.
    """
    if isinstance(part, Component):
        out: Dict[str, Any] = {"type": f"{type(part).__module__}.{type(part).__qualname__}"}
        if not type(part).__module__.startswith(_PACKAGE + "."):
            # a reader's class: its code by digest. The package's own classes are named by the package's
            # version (run folders store it), so a new Python's bytecode does not make a new structure.
            out["code"] = _digest(_class_description(type(part), set()))
        for k, v in part._structure_items():
            out[k] = describe(v)
        return out
    if isinstance(part, dict):
        return {str(k): describe(v) for k, v in part.items()}
    if isinstance(part, (list, tuple)):
        return [describe(v) for v in part]
    if part is None or isinstance(part, (bool, str, int, float)):
        return part
    if isinstance(part, (np.integer, np.floating)):
        return part.item()
    if isinstance(part, np.ndarray):
        if part.size <= 16 and part.dtype != object:
            return part.tolist()
        return {"array": list(part.shape), "dtype": str(part.dtype),
                "sha256": hashlib.sha256(np.ascontiguousarray(part).tobytes()).hexdigest()}
    plain = _plain(part, set())
    if _has_unshared(plain):
        return repr(_jsonable(plain)) if not isinstance(plain, Unshared) else repr(plain)
    return {"type": type(part).__qualname__, "sha256": _digest(plain)}


def _digest(plain: Any) -> str:
    return hashlib.sha256(repr(_jsonable(plain)).encode()).hexdigest()[:16]


def differences(old: Any, new: Any, path: str = "") -> List[str]:
    """Where two descriptions (from :func:`describe`) differ, as ``"path: old -> new"`` lines."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: List[str] = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{sub}: (absent) -> {_short(new[k])}")
            elif k not in new:
                out.append(f"{sub}: {_short(old[k])} -> (absent)")
            else:
                out.extend(differences(old[k], new[k], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(differences(a, b, f"{path}[{i}]"))
        return out
    return [] if old == new else [f"{path or '(model)'}: {_short(old)} -> {_short(new)}"]


def _short(x: Any, limit: int = 80) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the base class ----------------------------------------------------------------------------------

class Component:
    """Base class of every model part (stimulus, channel, synapse kind, synapse group).

    A subclass names the attributes its compiled loop takes as *inputs* in the class attribute
    ``inputs`` (a tuple of attribute names); everything else an instance holds, and the code of the
    class, is its *structure* and decides which compiled loops it may share (see the module text).
    Attributes whose names start with an underscore count like the others (a derived array that a
    compiled loop bakes in is structure too) unless listed in ``inputs``.
    """

    inputs: ClassVar[Tuple[str, ...]] = ()

    def _structure_items(self) -> List[Tuple[str, Any]]:
        skip = set(type(self).inputs)
        return [(k, v) for k, v in sorted(vars(self).items()) if k not in skip]

    def _description(self, seen: set) -> List[Any]:
        return ["component", _class_description(type(self), seen),
                [[k, _plain(v, seen)] for k, v in self._structure_items()]]

    @property
    def key(self) -> Tuple[str, ...]:
        """This part's structure as a hashable key (derived, see :func:`fingerprint`)."""
        return fingerprint(self)

    def structure(self) -> Dict[str, Any]:
        """This part's structure as a readable, JSON-friendly dict (see :func:`describe`)."""
        return describe(self)
