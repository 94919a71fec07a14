"""Fixed-step ODE solvers: the NumPy reference (chapter 1) and the compiled TensorFlow loop (chapter 2).

``odeint_np`` is importable without TensorFlow; ``odeint``, ``Integrator`` and
``enable_compile_cache`` import it on first use.
"""
from .numpy_solver import odeint_np
from .schemes import ORDER, SCHEMES, euler_step, rk2_step, rk4_step

__all__ = ["odeint_np", "odeint", "Integrator", "enable_compile_cache", "euler_step", "rk2_step", "rk4_step",
           "SCHEMES", "ORDER"]


def __getattr__(name):  # lazy: chapter 1 and the NumPy path never pay TensorFlow's import time
    if name in ("odeint", "Integrator", "enable_compile_cache"):
        from . import tf_solver

        return getattr(tf_solver, name)
    raise AttributeError(name)
