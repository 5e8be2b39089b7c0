"""purerl: deep reinforcement learning as pure JAX functions.

Three levels, each usable alone:

* pieces: ``td_update``, ``replay.init/add/sample``, ``epsilon_greedy``, ``discounted_returns``...
  pure functions over Equinox modules and pytrees, callable eagerly or under ``jit``;
* algorithms: ``purerl.algorithms.dqn`` with ``Config``, ``init``, ``step``, ``make_train``;
  ``jax.jit(jax.vmap(make_train(config)))(keys)`` trains one agent per key;
* experiments: ``purerl.run(...)`` and the ``purerl`` command.
"""

from purerl import algorithms, envs, replay
from purerl.experiment import Result, run
from purerl.networks import MLP, QNetwork
from purerl.policies import epsilon_greedy, greedy, linear_schedule
from purerl.returns import discounted_returns, n_step_targets
from purerl.types import Timestep, Transition
from purerl.value import (
    double_q_learning_td_error,
    huber_loss,
    periodic_update,
    polyak_update,
    q_learning_td_error,
    squared_loss,
    td_loss,
    td_update,
)

__version__ = "0.1.0"

__all__ = [
    "algorithms",
    "envs",
    "replay",
    "run",
    "Result",
    "MLP",
    "QNetwork",
    "greedy",
    "epsilon_greedy",
    "linear_schedule",
    "discounted_returns",
    "n_step_targets",
    "Transition",
    "Timestep",
    "q_learning_td_error",
    "double_q_learning_td_error",
    "squared_loss",
    "huber_loss",
    "td_loss",
    "td_update",
    "polyak_update",
    "periodic_update",
]
