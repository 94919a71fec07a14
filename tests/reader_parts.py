"""Model parts as a reader writes them in their own code, shared by the tests (no edit of psst_helpers)."""
import numpy as np

from psst_helpers.backend import ops_for
from psst_helpers.stimuli import Stimulus


class Sine(Stimulus):
    """A reader's own stimulus: amplitude * (1 + sin(2 pi f t)) into every neuron (uA/cm^2), f in Hz, t in ms.

    Nothing is declared: the frequency and amplitude are plain attributes, so they are structure.
    """

    time_varying = True

    def __init__(self, n, frequency, amplitude=4.0):
        self.n, self.frequency, self.amplitude = n, frequency, amplitude

    def __call__(self, t, like, inputs=None):
        xp = ops_for(like)
        t = xp.cast(t, like) if xp.name == "tensorflow" else np.asarray(t, dtype=np.asarray(like).dtype)
        phase = 2.0 * np.pi * self.frequency * 1e-3 * t
        return self.amplitude * (1.0 + (xp.tf.sin(phase) if xp.name == "tensorflow" else np.sin(phase))) + 0.0 * like
