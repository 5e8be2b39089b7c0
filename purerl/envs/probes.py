"""Probe environments with known values, for fast and sharp learning tests.

Each probe isolates one thing an agent must get right (after Andy Jones, "Debugging RL
Without the Agonizing Pain", 2021). With discount γ the optimal Q-values are:

| id | obs | actions | reward | Q* |
|---|---|---|---|---|
| ``ConstantReward-probe`` | 0 | 1 | +1, ends after 1 step | 1 |
| ``ObsReward-probe`` | ±1 at random | 1 | = obs, ends after 1 step | obs |
| ``TwoStep-probe`` | 0 then 1 | 1 | 0 then +1, ends after 2 steps | γ at obs 0, 1 at obs 1 |
| ``ActionReward-probe`` | 0 | 2 | −1 for action 0, +1 for action 1, 1 step | [−1, +1] |
| ``ObsActionReward-probe`` | ±1 at random | 2 | +1 if action = (obs > 0) else −1, 1 step | ±1 |
| ``TimeLimit-probe`` | 0 | 1 | +1 forever, never terminates, truncated at 5 steps | 1/(1−γ) |
| ``ContinuousTarget-probe`` | ±1 at random | a ∈ [−2, 2] | −(a − obs/2)², 1 step | best a = obs/2 |

The last one only comes out right if time-limit truncation bootstraps; an agent that treats
``done`` as terminal learns the average of 1..5 partial sums instead.
"""

from __future__ import annotations

from typing import Any, no_type_check

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from jaxtyping import ArrayLike, Int

__all__ = ["PROBES"]


# A gymnax state/params record is a pytree that JAX and Equinox rebuild through ``__init__``
# with traced, batched or placeholder leaves (``eqx.tree_at``): its fields are documented as
# (possibly traced or batched) numbers but not checked at runtime (``no_type_check``).
@no_type_check
@struct.dataclass
class ProbeState(environment.EnvState):
    sign: jax.Array
    time: Int[ArrayLike, "..."]


@no_type_check
@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: Int[ArrayLike, "..."] = 100


class _Probe(environment.Environment[ProbeState, ProbeParams]):
    horizon: int = 1  # terminates after this many steps (0: never)
    n_actions: int = 1
    random_sign: bool = False
    time_limit: int = 100

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=self.time_limit)

    def reward(self, state: ProbeState, action: jax.Array) -> jax.Array:
        raise NotImplementedError

    def get_obs(self, state: ProbeState, params: Any = None, key: Any = None) -> jax.Array:
        return jnp.reshape(state.sign, (1,)).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: ProbeParams) -> tuple[jax.Array, ProbeState]:
        coin = jax.random.bernoulli(key)
        sign = jnp.where(coin, 1.0, -1.0) if self.random_sign else jnp.float32(0.0)
        state = ProbeState(sign=jnp.float32(sign), time=0)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = jnp.asarray(self.reward(state, action), jnp.float32)
        new_state = self.next_state(state)
        terminated = self.is_terminated(new_state, params)
        return self.get_obs(new_state), new_state, reward, terminated, {}

    def next_state(self, state: ProbeState) -> ProbeState:
        return state.replace(time=state.time + 1)

    def is_terminated(self, state: ProbeState, params: ProbeParams) -> jax.Array:
        if self.horizon == 0:
            return jnp.array(False)
        return jnp.asarray(state.time >= self.horizon)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def num_actions(self) -> int:
        return self.n_actions

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.n_actions)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class ConstantReward(_Probe):
    """Reward +1 and termination after one step: Q* = 1 (checks the value scale)."""

    def reward(self, state, action):
        return 1.0


class ObsReward(_Probe):
    """Observation ±1, reward equal to it, one step: Q*(obs) = obs (checks the network sees obs)."""

    random_sign = True

    def reward(self, state, action):
        return state.sign


class TwoStep(_Probe):
    """Obs 0 then 1, reward 0 then +1: Q*(0) = γ, Q*(1) = 1 (checks discounting, bootstrap)."""

    horizon = 2

    def reward(self, state, action):
        return jnp.where(state.time == 1, 1.0, 0.0)

    def next_state(self, state):
        return state.replace(time=state.time + 1, sign=jnp.float32(1.0))


class ActionReward(_Probe):
    """Two actions, reward −1 / +1, one step: Q* = [−1, +1] (checks the action is credited)."""

    n_actions = 2

    def reward(self, state, action):
        return jnp.where(action == 1, 1.0, -1.0)


class ObsActionReward(_Probe):
    """Obs ±1, reward +1 for action (obs > 0), else −1: Q* = ±1 (needs obs and action together)."""

    n_actions = 2
    random_sign = True

    def reward(self, state, action):
        right = action == (state.sign > 0).astype(jnp.int32)
        return jnp.where(right, 1.0, -1.0)


class TimeLimit(_Probe):
    """Reward +1 forever, never terminates, truncated after 5 steps: Q* = 1/(1−γ)."""

    horizon = 0
    time_limit = 5

    def reward(self, state, action):
        return 1.0


class ContinuousTarget(_Probe):
    """Continuous action in [−2, 2], obs ±1, reward −(a − obs/2)², one step: the optimal
    action is obs/2 (checks a Gaussian policy's mean follows the observation)."""

    random_sign = True

    def reward(self, state, action):
        return -jnp.square(jnp.reshape(action, ())[()] - 0.5 * state.sign)

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-2.0, 2.0, (1,), jnp.float32)


PROBES: dict[str, type[_Probe]] = {
    "ConstantReward-probe": ConstantReward,
    "ObsReward-probe": ObsReward,
    "TwoStep-probe": TwoStep,
    "ActionReward-probe": ActionReward,
    "ObsActionReward-probe": ObsActionReward,
    "TimeLimit-probe": TimeLimit,
    "ContinuousTarget-probe": ContinuousTarget,
}
