"""purerl: deep reinforcement learning as pure JAX functions.

Three levels, each usable alone:

* pieces: ``td_update``, ``reinforce_loss``, ``ppo_loss`` (and their array cores
  ``policy_gradient_loss``, ``ppo_clip_loss``, ``value_loss``, ``entropy_loss``),
  ``replay.init/add/sample``, ``prioritized.init/add/sample/update_priorities``, one buffer
  interface over both (``buffers.uniform / prioritized / fifo``),
  ``epsilon_greedy``, ``discounted_returns``, ``gae``... and, for tables,
  ``tabular_td_update`` / ``tabular_sarsa_update`` and ``value_iteration`` /
  ``policy_evaluation`` (``purerl.planning``); for continuous control the off-policy
  actor-critic losses ``soft_q_target``, ``clipped_double_q_target``, ``critic_loss``,
  ``sac_actor_loss``, ``temperature_loss``, ``td3_target_action``,
  ``deterministic_actor_loss`` (``purerl.off_policy``); tree search over board games
  through mctx (``purerl.search``: the game's rules as the model); RLHF's maths
  (``purerl.preferences``: ``bradley_terry_loss``, ``token_kl``, ``kl_penalized_rewards``,
  ``adaptive_kl_coefficient``) and a small causal transformer (``purerl.language``);
  pure functions over Equinox modules and pytrees, callable eagerly or under ``jit``;
* algorithms: ``purerl.algorithms.dqn`` / ``pqn`` / ``reinforce`` / ``a2c`` / ``ppo`` /
  ``sac`` / ``td3`` (DDPG: ``td3.ddpg_config()``) / ``tabular`` / ``alphazero`` /
  ``rlhf`` (also ``purerl.rlhf``: pretrain → preferences → reward model → PPO on a KL leash),
  each an ``Algorithm`` record (``Config``, ``init``, ``step``, ``greedy_policy``, ...)
  registered under its name; ``make_train``, ``schedule`` and evaluation are generic
  (``purerl.algorithms.core``); ``jax.jit(jax.vmap(make_train(config)))(keys)`` trains one
  agent per key; ``register`` adds your own;
* experiments: ``purerl.run(...)`` / ``purerl.resume(...)`` and the ``purerl`` command
  (seeds × hyperparameter grids × devices, checkpoints, results on disk), ``purerl.stats``
  (IQM, bootstrap CIs), ``purerl.plotting``.
"""

from purerl import (
    algorithms,
    buffers,
    envs,
    language,
    off_policy,
    planning,
    preferences,
    prioritized,
    replay,
    search,
    stats,
)
from purerl.algorithms import rlhf
from purerl.algorithms.core import Algorithm, Policy, register
from purerl.experiment import Result, resume, run
from purerl.language import CausalTransformer
from purerl.networks import (
    MLP,
    ActorCritic,
    CriticEnsemble,
    DeterministicActor,
    MinAtarCNN,
    NatureCNN,
    PolicyNetwork,
    PolicyValueNetwork,
    QCritic,
    QNetwork,
    SquashedGaussianActor,
    ValueNetwork,
)
from purerl.off_policy import (
    clipped_double_q_target,
    critic_loss,
    default_target_entropy,
    deterministic_actor_loss,
    sac_actor_loss,
    soft_q_target,
    td3_target_action,
    temperature_loss,
)
from purerl.planning import bellman_q, policy_evaluation, value_iteration
from purerl.policies import (
    Categorical,
    DiagGaussian,
    TanhGaussian,
    clip_action,
    epsilon_greedy,
    greedy,
    linear_schedule,
    scale_action,
    unscale_action,
)
from purerl.policy_gradient import (
    a2c_loss,
    clipped_value_loss,
    entropy_loss,
    masked_mean,
    policy_gradient_loss,
    ppo_clip_loss,
    ppo_clipped_surrogate,
    ppo_diagnostics,
    ppo_loss,
    ppo_objective,
    reinforce_loss,
    value_loss,
)
from purerl.preferences import (
    adaptive_kl_coefficient,
    best_of_n_kl,
    bradley_terry_loss,
    kl_penalized_rewards,
    token_kl,
    token_log_probs,
)
from purerl.returns import discounted_returns, gae, lambda_returns, n_step_targets
from purerl.types import Timestep, Transition
from purerl.value import (
    double_q_learning_td_error,
    huber_loss,
    periodic_update,
    polyak_update,
    q_learning_td_error,
    squared_loss,
    tabular_sarsa_update,
    tabular_td_update,
    tabular_update,
    td_loss,
    td_update,
)

__version__ = "0.1.0"

__all__ = [
    "algorithms",
    "Algorithm",
    "Policy",
    "register",
    "buffers",
    "policy_gradient_loss",
    "entropy_loss",
    "ppo_clip_loss",
    "ppo_diagnostics",
    "value_loss",
    "envs",
    "replay",
    "prioritized",
    "search",
    "stats",
    "run",
    "resume",
    "Result",
    "MLP",
    "QNetwork",
    "MinAtarCNN",
    "NatureCNN",
    "PolicyNetwork",
    "PolicyValueNetwork",
    "ValueNetwork",
    "ActorCritic",
    "QCritic",
    "CriticEnsemble",
    "DeterministicActor",
    "SquashedGaussianActor",
    "Categorical",
    "DiagGaussian",
    "TanhGaussian",
    "clip_action",
    "scale_action",
    "unscale_action",
    "off_policy",
    "soft_q_target",
    "clipped_double_q_target",
    "critic_loss",
    "sac_actor_loss",
    "temperature_loss",
    "default_target_entropy",
    "td3_target_action",
    "deterministic_actor_loss",
    "reinforce_loss",
    "a2c_loss",
    "ppo_clipped_surrogate",
    "clipped_value_loss",
    "ppo_loss",
    "ppo_objective",
    "masked_mean",
    "gae",
    "lambda_returns",
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
    "tabular_update",
    "tabular_td_update",
    "tabular_sarsa_update",
    "planning",
    "value_iteration",
    "policy_evaluation",
    "bellman_q",
    "language",
    "CausalTransformer",
    "preferences",
    "rlhf",
    "bradley_terry_loss",
    "token_log_probs",
    "token_kl",
    "kl_penalized_rewards",
    "adaptive_kl_coefficient",
    "best_of_n_kl",
]
