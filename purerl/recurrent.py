"""L2: recurrent cores and the recurrent networks built on them (memory for partially
observed tasks).

When the observation is not the state, the agent builds one from history,
``h_t = f(h_{t−1}, o_t)``: the functional form of a recurrent network. A ``RecurrentCore``
wraps ``eqx.nn.GRUCell`` (Cho et al., 2014) or ``eqx.nn.LSTMCell`` (Hochreiter & Schmidhuber,
1997) and **resets its carry where an episode starts**: every call takes a ``first`` flag, and
``first = True`` replaces the incoming carry by the initial one before the cell runs. That one
rule makes a scan over a rollout that crosses episode boundaries equal to running each episode
from a fresh carry (the bug recurrent RL code keeps meeting is a carry leaking from one episode
into the next).

Like every purerl network, these map ONE environment's input; ``jax.vmap`` them over envs:

- ``RecurrentCore``: ``core(carry, x, first) -> (carry, h)``; ``core.scan(carry, xs, firsts)``
  over a time axis; ``core.initial_carry()``.
- ``RecurrentActorCritic``: ``net(carry, obs, first) -> (carry, (distribution, value))``.
- ``RecurrentQNetwork``: ``net(carry, obs, first) -> (carry, q_values)``.
- ``unroll(net, carry, obs [T, B, ...], first [T, B])``: any of them over a batch of sequences.

A network is recurrent when it has ``initial_carry()`` (``is_recurrent``): algorithms use that
to pick their recurrent path, and refuse a recurrent network where they have none.

Example:
    >>> core = RecurrentCore("gru", 3, 16, key=key)
    >>> carry, outs = core.scan(core.initial_carry(), xs, firsts)   # xs [T, 3], firsts [T]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, Real

from purerl.networks import (
    MLP,
    _activation,
    _check_obs,
    _flat_size,
    _orthogonal_mlp,
    orthogonal_linear,
)
from purerl.policies import Categorical, DiagGaussian

__all__ = [
    "CORES",
    "RecurrentCore",
    "RecurrentActorCritic",
    "RecurrentQNetwork",
    "is_recurrent",
    "initial_carry",
    "carries_after",
    "unroll",
]

CORES = ("gru", "lstm")


def is_recurrent(network: Any) -> bool:
    """Whether ``network`` is recurrent: it has ``initial_carry()`` and is called as
    ``network(carry, obs, first) -> (carry, out)``."""
    module = getattr(network, "module", network)  # core.UserNetwork wraps a user's module
    return callable(getattr(module, "initial_carry", None))


def _reset(first: Bool[ArrayLike, ""], initial: Any, carry: Any) -> Any:
    return jax.tree.map(lambda i, c: jnp.where(first, i, c), initial, carry)


class RecurrentCore(eqx.Module):
    """A GRU or LSTM cell that resets its carry at episode starts.

    ``core(carry, x, first) -> (carry, h)``: where ``first`` is true the carry is replaced by
    ``initial_carry()`` (zeros) before the cell reads ``x``; ``h`` is the new hidden state
    (the LSTM's ``h``; its carry is ``(h, c)``).
    """

    cell: eqx.nn.GRUCell | eqx.nn.LSTMCell
    kind: str = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)

    def __init__(self, kind: str, input_size: int, hidden_size: int, *, key: PRNGKeyArray):
        if kind not in CORES:
            raise ValueError(f"recurrent: unknown core {kind!r}, expected one of {list(CORES)}")
        if int(hidden_size) < 1:
            raise ValueError(f"core_size: must be >= 1, got {hidden_size}")
        self.kind = kind
        self.hidden_size = int(hidden_size)
        cell = eqx.nn.GRUCell if kind == "gru" else eqx.nn.LSTMCell
        self.cell = cell(int(input_size), self.hidden_size, key=key)

    def initial_carry(self) -> Any:
        """The carry at an episode start: zeros ``[H]`` (GRU) or ``(h, c)`` zeros (LSTM)."""
        zeros = jnp.zeros((self.hidden_size,), jnp.float32)
        return zeros if self.kind == "gru" else (zeros, zeros)

    def __call__(
        self, carry: Any, x: Float[ArrayLike, " d"], first: Bool[ArrayLike, ""]
    ) -> tuple[Any, Float[Array, " H"]]:
        return self._step(carry, self._input_gates(jnp.asarray(x, jnp.float32)), first)

    def _input_gates(self, x: Float[Array, "... d"]) -> Float[Array, "... G"]:
        """``W_ih x + b`` (for every leading index at once): the part of the cell that does
        not depend on the carry, so a sequence computes it as one matmul outside the loop."""
        projected = x @ self.cell.weight_ih.T
        return projected + jnp.broadcast_to(self.cell.bias, projected.shape)

    def _step(
        self, carry: Any, gates: Float[Array, " G"], first: Bool[ArrayLike, ""]
    ) -> tuple[Any, Float[Array, " H"]]:
        """The cell given its input gates (``eqx.nn.GRUCell`` / ``LSTMCell``'s equations)."""
        carry = _reset(first, self.initial_carry(), carry)
        if self.kind == "gru":
            i_r, i_z, i_n = jnp.split(gates, 3)
            h_r, h_z, h_n = jnp.split(self.cell.weight_hh @ carry, 3)
            reset = jax.nn.sigmoid(i_r + h_r)
            update = jax.nn.sigmoid(i_z + h_z)
            new = jnp.tanh(i_n + reset * (h_n + self.cell.bias_n))
            h = new + update * (carry - new)
            return h, h
        h, c = carry
        i, f, g, o = jnp.split(gates + self.cell.weight_hh @ h, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def scan(
        self, carry: Any, xs: Float[ArrayLike, "T d"], firsts: Bool[ArrayLike, " T"]
    ) -> tuple[Any, Float[Array, "T H"]]:
        """The core over a sequence (time on axis 0), resetting where ``firsts`` is true.

        Returns:
            The carry after the last step and the hidden states ``[T, H]``.
        """
        return jax.lax.scan(lambda c, inp: self(c, *inp), carry, (xs, firsts))

    def unroll(
        self, carry: Any, xs: Float[ArrayLike, "T B d"], firsts: Bool[ArrayLike, "T B"]
    ) -> tuple[Any, Float[Array, "T B H"]]:
        """The core over ``B`` sequences at once (carry ``[B, ...]``): the input gates of all
        ``T·B`` steps as one matmul, then a scan over time of the carry-dependent part only."""
        gates = self._input_gates(jnp.asarray(xs, jnp.float32))
        return jax.lax.scan(lambda c, inp: jax.vmap(self._step)(c, *inp), carry, (gates, firsts))


class RecurrentActorCritic(eqx.Module):
    """``(carry, obs, first) -> (carry, (π(·|history), V(history)))``: an MLP torso, a
    recurrent core, and an actor and a critic head (one hidden layer each) reading the core's
    output — the shape of PureJaxRL's GRU PPO (Lu et al., 2022).

    Example:
        >>> net = RecurrentActorCritic((2,), 2, key=key)
        >>> carry, (dist, value) = net(net.initial_carry(), obs, jnp.array(True))
    """

    torso: MLP
    core: RecurrentCore
    actor: MLP
    critic: MLP
    log_std: Float[Array, " d"] | None
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        *,
        continuous: bool = False,
        hidden_sizes: Sequence[int] = (64,),
        activation: str = "tanh",
        core: str = "gru",
        core_size: int = 64,
        log_std_init: Real[ArrayLike, ""] = 0.0,
        key: PRNGKeyArray,
    ):
        _activation(activation)
        torso_key, core_key, actor_key, critic_key = jax.random.split(key, 4)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        sizes = [int(h) for h in hidden_sizes]
        if not sizes:
            raise ValueError("hidden_sizes: a recurrent network needs at least one torso layer")
        torso = MLP(
            _flat_size(obs_shape),
            sizes[-1],
            sizes[:-1],
            activation,
            activate_output=True,
            key=torso_key,
        )
        self.torso = _orthogonal(torso, torso_key)
        self.core = RecurrentCore(core, sizes[-1], core_size, key=core_key)
        head = (int(core_size),)
        self.actor = _orthogonal_mlp(
            core_size, int(action_dim), head, activation, 0.01, key=actor_key
        )
        self.critic = _orthogonal_mlp(core_size, 1, head, activation, 1.0, key=critic_key)
        self.log_std = (
            jnp.full((int(action_dim),), log_std_init, jnp.float32) if continuous else None
        )

    def initial_carry(self) -> Any:
        """The core's carry at an episode start."""
        return self.core.initial_carry()

    def __call__(
        self, carry: Any, obs: ArrayLike, first: Bool[ArrayLike, ""]
    ) -> tuple[Any, tuple[Categorical | DiagGaussian, Float[Array, ""]]]:
        _check_obs(obs, self.obs_shape)
        carry, h = self.core(carry, self.torso(obs), first)
        return carry, self._heads(h)

    def _heads(self, h: Float[Array, "*B H"]) -> tuple[Categorical | DiagGaussian, Array]:
        batched = h.shape[:-1]
        flat = h.reshape(-1, h.shape[-1])
        out = jax.vmap(self.actor)(flat).reshape(*batched, -1)
        value = jax.vmap(self.critic)(flat).reshape(batched)
        dist = Categorical(out) if self.log_std is None else DiagGaussian(out, self.log_std)
        return dist, value

    def unroll(
        self, carry: Any, obs: ArrayLike, first: Bool[ArrayLike, "T B"]
    ) -> tuple[Any, tuple[Categorical | DiagGaussian, Float[Array, "T B"]]]:
        """``B`` sequences of ``T`` steps at once (what ``purerl.recurrent.unroll`` calls):
        the torso and heads as batched matmuls over all ``T·B`` steps, only the core inside
        the scan over time (the same numbers as stepping, far fewer sequential ops)."""
        carry, h = self.core.unroll(carry, _batched(self.torso, obs, 2), first)
        return carry, self._heads(h)


class RecurrentQNetwork(eqx.Module):
    """``(carry, obs, first) -> (carry, Q(history, ·))``: an MLP torso (LayerNorm optional, as
    in PQN), a recurrent core, and an MLP head to one Q-value per action (rPQN, Gallici et al.,
    2024; R2D2's core, Kapturowski et al., 2019)."""

    torso: MLP
    core: RecurrentCore
    head: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        core: str = "gru",
        core_size: int = 64,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        torso_key, core_key, head_key = jax.random.split(key, 3)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        sizes = [int(h) for h in hidden_sizes]
        if not sizes:
            raise ValueError("hidden_sizes: a recurrent network needs at least one torso layer")
        self.torso = MLP(
            _flat_size(obs_shape),
            sizes[-1],
            sizes[:-1],
            activation,
            layer_norm=layer_norm,
            activate_output=True,
            key=torso_key,
        )
        self.core = RecurrentCore(core, sizes[-1], core_size, key=core_key)
        self.head = MLP(
            core_size,
            int(num_actions),
            (int(core_size),),
            activation,
            layer_norm=layer_norm,
            key=head_key,
        )

    def initial_carry(self) -> Any:
        """The core's carry at an episode start."""
        return self.core.initial_carry()

    def __call__(
        self, carry: Any, obs: ArrayLike, first: Bool[ArrayLike, ""]
    ) -> tuple[Any, Float[Array, " n_actions"]]:
        _check_obs(obs, self.obs_shape)
        carry, h = self.core(carry, self.torso(obs), first)
        return carry, self.head(h)

    def unroll(
        self, carry: Any, obs: ArrayLike, first: Bool[ArrayLike, "T B"]
    ) -> tuple[Any, Float[Array, "T B n_actions"]]:
        """``B`` sequences of ``T`` steps at once, only the core inside the scan over time
        (see ``RecurrentActorCritic.unroll``)."""
        carry, h = self.core.unroll(carry, _batched(self.torso, obs, 2), first)
        return carry, _batched(self.head, h, 2)


def _orthogonal(mlp: MLP, key: PRNGKeyArray) -> MLP:
    """Every layer of a torso orthogonal with gain √2 (Huang et al., 2022)."""
    keys = jax.random.split(key, len(mlp.layers))
    layers = [
        orthogonal_linear(layer.in_features, layer.out_features, 2.0**0.5, key=k)
        for layer, k in zip(mlp.layers, keys, strict=True)
    ]
    return eqx.tree_at(lambda m: m.layers, mlp, layers)


def _batched(module: Any, x: ArrayLike, batch_ndim: int) -> Array:
    """A one-input module over the leading ``batch_ndim`` axes, as one batched call."""
    lead = x.shape[:batch_ndim]
    out = jax.vmap(module)(x.reshape(-1, *x.shape[batch_ndim:]))
    return out.reshape(*lead, *out.shape[1:])


def unroll(
    network: Any, carry: Any, obs: ArrayLike, first: Bool[ArrayLike, "T B"]
) -> tuple[Any, Any]:
    """Run a recurrent ``network(carry, obs, first) -> (carry, out)`` over ``B`` sequences of
    ``T`` steps: ``carry`` ``[B, ...]`` at the start, ``obs`` ``[T, B, ...]``, ``first``
    ``[T, B]`` (resets inside the sequences).

    A network with its own ``unroll(carry, obs, first)`` method (purerl's recurrent networks:
    batched torso and heads, only the core in the time loop) is called through it; any other
    is stepped with ``jax.vmap`` inside a ``lax.scan`` over time.

    Returns:
        The carry after the last step ``[B, ...]`` and the outputs ``[T, B, ...]``.
    """
    if callable(getattr(network, "unroll", None)):
        return network.unroll(carry, obs, first)
    step = jax.vmap(network)
    return jax.lax.scan(lambda c, inp: step(c, *inp), carry, (obs, first))


def initial_carry(network: Any, num_envs: int) -> Any:
    """The carry of ``num_envs`` fresh episodes, ``[num_envs, ...]`` (``None`` for a
    feed-forward network)."""
    if not is_recurrent(network):
        return None
    module = getattr(network, "module", network)
    one = module.initial_carry()
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs, *x.shape)), one)


def carries_after(carries: Any, final_carry: Any) -> Any:
    """From the carries a rollout stored *before* each step ``[T, N, ...]`` and the carry
    after the last one, the carries *after* each step: the history each ``next_obs`` is
    seen with (what bootstrapping from ``V(next_obs)`` or ``max_a Q(next_obs, a)`` needs)."""
    return jax.tree.map(
        lambda c, f: jnp.concatenate([c[1:], f[None]], axis=0), carries, final_carry
    )
