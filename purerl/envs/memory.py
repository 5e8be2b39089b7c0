"""Partially observed environments: tasks a feed-forward agent cannot solve, because the
observation is not the state.

| id | obs | actions | what must be remembered |
|---|---|---|---|
| ``MemoryProbe-v0`` | ``[cue, query]`` | 2 | a cue (±1) shown at the first step only |
| ``CartPole-masked-v1`` | ``[x, θ]`` | 2 | the velocities ``ẋ``, ``θ̇`` (hidden) |

``CartPole-masked-v1`` has CartPole-v1's dynamics, reward and 500-step limit.

``MemoryProbe-v0`` is a probe with a known answer: the episode is ``memory_length + 1`` steps;
the first observation is ``[cue, 0]`` with the cue ±1 at random, then ``[0, 0]``, and the last
``[0, 1]`` (the query). Reward is 1 when the action at the query matches the cue (action 1 for
+1, action 0 for −1), 0 otherwise and at every other step. The return is the success (0 or 1):
a memoryless policy sees the same query observation whatever the cue and scores 0.5 in
expectation; an agent that remembers scores 1. ``memory_length`` is an environment parameter
(``"MemoryProbe-v0?memory_length=8"``, see ``purerl.envs.make``).

gymnax's bsuite tasks ``MemoryChain-bsuite`` (the context bit shown only at the first step,
asked for ``memory_length`` steps later) and ``UmbrellaChain-bsuite`` (credit assignment
across a chain) are reachable by their gymnax ids.
"""

from __future__ import annotations

from typing import Any, no_type_check

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from gymnax.environments.classic_control.cartpole import CartPole
from jaxtyping import ArrayLike, Int

__all__ = ["MemoryProbe", "MaskedCartPole", "ENVS"]


# gymnax-style records: rebuilt by JAX with traced/batched leaves, so not type-checked
@no_type_check
@struct.dataclass
class MemoryState(environment.EnvState):
    cue: jax.Array
    time: Int[ArrayLike, "..."]


@no_type_check
@struct.dataclass
class MemoryParams(environment.EnvParams):
    memory_length: Int[ArrayLike, "..."] = 4
    max_steps_in_episode: Int[ArrayLike, "..."] = 1000


class MemoryProbe(environment.Environment[MemoryState, MemoryParams]):
    """Remember a cue shown at the first step; answer it ``memory_length`` steps later."""

    @property
    def default_params(self) -> MemoryParams:
        return MemoryParams()

    def get_obs(self, state: MemoryState, params: MemoryParams, key: Any = None) -> jax.Array:
        cue = jnp.where(state.time == 0, state.cue, 0.0)
        query = jnp.where(state.time == params.memory_length, 1.0, 0.0)
        return jnp.stack([cue, query]).astype(jnp.float32)

    def reset_env(self, key: jax.Array, params: MemoryParams) -> tuple[jax.Array, MemoryState]:
        cue = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        state = MemoryState(cue=cue, time=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        at_query = state.time == params.memory_length
        right = action == (state.cue > 0).astype(jnp.int32)
        reward = jnp.where(at_query & right, 1.0, 0.0).astype(jnp.float32)
        new_state = state.replace(time=state.time + 1)
        terminated = jnp.asarray(at_query)
        return self.get_obs(new_state, params), new_state, reward, terminated, {}

    def is_terminated(self, state: MemoryState, params: MemoryParams) -> jax.Array:
        return jnp.asarray(state.time > params.memory_length)

    @property
    def name(self) -> str:
        return "MemoryProbe-v0"

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


class MaskedCartPole(CartPole):
    """CartPole-v1 observing only the cart position and the pole angle ``[x, θ]``: the same
    dynamics, reward and time limit, but the velocities must be inferred from history."""

    def get_obs(self, state: Any, params: Any = None, key: Any = None) -> jax.Array:
        return jnp.array([state.x, state.theta])

    @property
    def name(self) -> str:
        return "CartPole-masked-v1"

    def observation_space(self, params: Any) -> spaces.Box:
        high = jnp.array([params.x_threshold * 2, params.theta_threshold_radians * 2])
        return spaces.Box(-high, high, (2,), dtype=jnp.float32)


ENVS = {"MemoryProbe-v0": MemoryProbe, "CartPole-masked-v1": MaskedCartPole}
