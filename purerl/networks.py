"""L2: Equinox networks. Each maps ONE observation to outputs; ``jax.vmap`` it over a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["ACTIVATIONS", "MLP", "QNetwork"]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "swish": jax.nn.swish,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
}


def _activation(name: str) -> Callable[[Array], Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(eqx.Module):
    """Fully connected network: flatten the input, activated hidden layers, linear output."""

    layers: list[eqx.nn.Linear]
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        *,
        key: PRNGKeyArray,
    ):
        _activation(activation)
        sizes = [int(in_size), *[int(h) for h in hidden_sizes], int(out_size)]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        self.activation = activation

    def __call__(self, x: Array) -> Float[Array, " out"]:
        act = _activation(self.activation)
        x = jnp.ravel(x).astype(jnp.float32)
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


class QNetwork(eqx.Module):
    """MLP Q-network ``s ↦ Q(s, ·)``, optionally with a dueling head.

    Dueling: ``Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')`` (Wang et al., 2016).

    Example:
        >>> q_net = QNetwork(obs_shape=(4,), num_actions=2, hidden_sizes=(64, 64), key=key)
        >>> q_net(obs).shape  # (2,)
    """

    torso: MLP
    head: eqx.nn.Linear
    value_head: eqx.nn.Linear | None
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        dueling: bool = False,
        *,
        key: PRNGKeyArray,
    ):
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one hidden layer")
        if int(num_actions) < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        in_size = 1
        for d in obs_shape:
            in_size *= int(d)
        torso_key, head_key, value_key = jax.random.split(key, 3)
        *torso_sizes, last = [int(h) for h in hidden_sizes]
        self.torso = MLP(in_size, last, torso_sizes, activation, key=torso_key)
        self.head = eqx.nn.Linear(last, int(num_actions), key=head_key)
        self.value_head = eqx.nn.Linear(last, 1, key=value_key) if dueling else None
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.num_actions = int(num_actions)

    def __call__(self, obs: Array) -> Float[Array, " n_actions"]:
        if tuple(obs.shape) != self.obs_shape:
            raise ValueError(
                f"obs: expected shape {self.obs_shape} (one observation; vmap over "
                f"a batch), got {tuple(obs.shape)}"
            )
        act = _activation(self.torso.activation)
        h = act(self.torso(obs))
        q = self.head(h)
        if self.value_head is not None:
            q = self.value_head(h) + q - jnp.mean(q)
        return q
