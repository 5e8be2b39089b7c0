"""L2: Equinox networks. Each maps ONE observation to outputs; ``jax.vmap`` it over a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from purerl.policies import Categorical, DiagGaussian

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "QNetwork",
    "PolicyNetwork",
    "ValueNetwork",
    "ActorCritic",
    "orthogonal_linear",
    "orthogonal_matrix",
]

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
        _check_obs(obs, self.obs_shape)
        act = _activation(self.torso.activation)
        h = act(self.torso(obs))
        q = self.head(h)
        if self.value_head is not None:
            q = self.value_head(h) + q - jnp.mean(q)
        return q


def orthogonal_matrix(key: PRNGKeyArray, rows: int, cols: int, scale: float = 1.0) -> Array:
    """A random ``[rows, cols]`` matrix with orthonormal columns (or rows), times ``scale``.

    Gram–Schmidt (applied twice per column for stability) on a Gaussian matrix, written in
    plain XLA ops: ``jax.nn.initializers.orthogonal`` calls LAPACK's batched QR, whose
    thread-pool fan-out deadlocked here (jaxlib 0.10.2, 2-core CPU) when network init was
    vmapped over seeds.
    """
    n, m = max(rows, cols), min(rows, cols)
    a = jax.random.normal(key, (n, m), jnp.float32)

    def next_column(q, j):
        v = jnp.take(a, j, axis=1)
        for _ in range(2):
            v = v - q @ (q.T @ v)
        q = q.at[:, j].set(v / jnp.linalg.norm(v))
        return q, None

    q, _ = jax.lax.scan(next_column, jnp.zeros((n, m), jnp.float32), jnp.arange(m))
    return scale * (q if rows >= cols else q.T)


def orthogonal_linear(
    in_size: int, out_size: int, scale: float, *, key: PRNGKeyArray
) -> eqx.nn.Linear:
    """``eqx.nn.Linear`` with an orthogonal weight of gain ``scale`` and a zero bias.

    The usual policy-gradient initialisation (Huang et al., 2022, "The 37 implementation
    details of PPO"): gain √2 for hidden layers, 0.01 for the policy head, 1 for the value head.
    """
    layer = eqx.nn.Linear(in_size, out_size, key=key)
    weight = orthogonal_matrix(key, out_size, in_size, scale)
    layer = eqx.tree_at(lambda m: m.weight, layer, weight)
    return eqx.tree_at(lambda m: m.bias, layer, jnp.zeros((out_size,), jnp.float32))


def _orthogonal_mlp(
    in_size: int,
    out_size: int,
    hidden_sizes: Sequence[int],
    activation: str,
    head_scale: float,
    *,
    key: PRNGKeyArray,
) -> MLP:
    mlp = MLP(in_size, out_size, hidden_sizes, activation, key=key)
    keys = jax.random.split(key, len(mlp.layers))
    scales = [2.0**0.5] * (len(mlp.layers) - 1) + [head_scale]
    layers = [
        orthogonal_linear(layer.in_features, layer.out_features, s, key=k)
        for layer, s, k in zip(mlp.layers, scales, keys, strict=True)
    ]
    return eqx.tree_at(lambda m: m.layers, mlp, layers)


def _flat_size(obs_shape: Sequence[int]) -> int:
    size = 1
    for d in obs_shape:
        size *= int(d)
    return size


def _check_obs(obs: Array, obs_shape: tuple[int, ...]) -> None:
    if tuple(obs.shape) != obs_shape:
        raise ValueError(
            f"obs: expected shape {obs_shape} (one observation; vmap over a batch), "
            f"got {tuple(obs.shape)}"
        )


class PolicyNetwork(eqx.Module):
    """MLP policy ``s ↦ π(·|s)``: ``Categorical`` logits, or a ``DiagGaussian`` whose mean is
    the MLP output and whose log-std is a state-independent learned vector.

    Example:
        >>> pi = PolicyNetwork((4,), 2, key=key)                        # discrete
        >>> pi = PolicyNetwork((3,), 1, continuous=True, key=key)       # continuous
        >>> a = pi(obs).sample(key)
    """

    net: MLP
    log_std: Float[Array, " d"] | None
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    continuous: bool = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        *,
        continuous: bool = False,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        key: PRNGKeyArray,
    ):
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.continuous = bool(continuous)
        self.net = _orthogonal_mlp(
            _flat_size(obs_shape), int(action_dim), hidden_sizes, activation, 0.01, key=key
        )
        self.log_std = (
            jnp.full((int(action_dim),), log_std_init, jnp.float32) if continuous else None
        )

    def __call__(self, obs: Array) -> Categorical | DiagGaussian:
        _check_obs(obs, self.obs_shape)
        out = self.net(obs)
        if self.log_std is None:
            return Categorical(out)
        return DiagGaussian(out, self.log_std)


class ValueNetwork(eqx.Module):
    """MLP state-value function ``s ↦ V(s)`` (a scalar)."""

    net: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        *,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        key: PRNGKeyArray,
    ):
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.net = _orthogonal_mlp(_flat_size(obs_shape), 1, hidden_sizes, activation, 1.0, key=key)

    def __call__(self, obs: Array) -> Float[Array, ""]:
        _check_obs(obs, self.obs_shape)
        return self.net(obs)[0]


class ActorCritic(eqx.Module):
    """``s ↦ (π(·|s), V(s))``: separate policy and value MLPs, or one shared torso with two
    linear heads (``shared_torso=True``).

    Example:
        >>> ac = ActorCritic((4,), 2, key=key)
        >>> dist, value = ac(obs)
    """

    policy: PolicyNetwork
    value: ValueNetwork | eqx.nn.Linear
    shared_torso: bool = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        *,
        continuous: bool = False,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared_torso: bool = False,
        log_std_init: float = 0.0,
        key: PRNGKeyArray,
    ):
        policy_key, value_key = jax.random.split(key)
        self.shared_torso = bool(shared_torso)
        self.policy = PolicyNetwork(
            obs_shape,
            action_dim,
            continuous=continuous,
            hidden_sizes=hidden_sizes,
            activation=activation,
            log_std_init=log_std_init,
            key=policy_key,
        )
        if shared_torso:
            last = int(hidden_sizes[-1])
            self.value = orthogonal_linear(last, 1, 1.0, key=value_key)
        else:
            self.value = ValueNetwork(
                obs_shape, hidden_sizes=hidden_sizes, activation=activation, key=value_key
            )

    def __call__(self, obs: Array) -> tuple[Categorical | DiagGaussian, Float[Array, ""]]:
        if not self.shared_torso:
            return self.policy(obs), self.value(obs)
        _check_obs(obs, self.policy.obs_shape)
        act = _activation(self.policy.net.activation)
        h = jnp.ravel(obs).astype(jnp.float32)
        for layer in self.policy.net.layers[:-1]:
            h = act(layer(h))
        out = self.policy.net.layers[-1](h)
        dist = (
            Categorical(out)
            if self.policy.log_std is None
            else DiagGaussian(out, self.policy.log_std)
        )
        return dist, self.value(h)[0]
