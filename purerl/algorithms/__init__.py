"""L3: one module per algorithm, all with the same shape: ``Config``, ``init``, ``step``,
``evaluate``, ``make_train``."""

from purerl.algorithms import dqn

ALGORITHMS = {"dqn": dqn}

__all__ = ["dqn", "ALGORITHMS"]
