"""L3: one module per algorithm, all with the same shape: ``Config``, ``init``, ``step``,
``evaluate``, ``make_train``."""

from purerl.algorithms import a2c, dqn, ppo, pqn, reinforce, tabular

ALGORITHMS = {
    "dqn": dqn,
    "pqn": pqn,
    "reinforce": reinforce,
    "a2c": a2c,
    "ppo": ppo,
    "tabular": tabular,
}

__all__ = ["dqn", "pqn", "reinforce", "a2c", "ppo", "tabular", "ALGORITHMS"]
