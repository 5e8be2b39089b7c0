"""L3: one module per algorithm, all with the same shape: ``Config``, ``init``, ``step``,
``evaluate``, ``make_train``."""

from purerl.algorithms import a2c, dqn, ppo, reinforce

ALGORITHMS = {"dqn": dqn, "reinforce": reinforce, "a2c": a2c, "ppo": ppo}

__all__ = ["dqn", "reinforce", "a2c", "ppo", "ALGORITHMS"]
