"""L3: one module per algorithm, each registered in ``core.ALGORITHMS`` as an
``core.Algorithm`` record (``Config``, ``init``, ``step``, ``greedy_policy``, ...); the generic
``make_train``, ``schedule`` and evaluation of ``core`` serve them all."""

from purerl.algorithms import (
    a2c,
    alphazero,
    core,
    dqn,
    ppo,
    pqn,
    reinforce,
    rlhf,
    sac,
    tabular,
    td3,
)
from purerl.algorithms.core import ALGORITHMS, Algorithm, Policy, register

__all__ = [
    "core",
    "dqn",
    "pqn",
    "reinforce",
    "a2c",
    "ppo",
    "sac",
    "td3",
    "tabular",
    "alphazero",
    "rlhf",
    "ALGORITHMS",
    "Algorithm",
    "Policy",
    "register",
]
