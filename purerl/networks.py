"""L2: Equinox networks. Each maps ONE observation to outputs; ``jax.vmap`` it over a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from purerl.policies import Categorical, DiagGaussian, TanhGaussian

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "QNetwork",
    "ConvTorso",
    "MinAtarCNN",
    "NatureCNN",
    "TORSOS",
    "torso_for",
    "PolicyNetwork",
    "ValueNetwork",
    "ActorCritic",
    "orthogonal_linear",
    "orthogonal_matrix",
    "QCritic",
    "CriticEnsemble",
    "DeterministicActor",
    "SquashedGaussianActor",
    "ResidualMLP",
    "PolicyValueNetwork",
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
    """Fully connected network: flatten the input, activated hidden layers, linear output.

    ``layer_norm=True`` puts a LayerNorm (Ba et al., 2016) between each hidden layer's linear
    map and its activation, as PQN does (Gallici et al., 2024). ``activate_output=True``
    treats the output layer as one more hidden layer (normalised and activated): the MLP is
    then a torso whose output feeds heads.
    """

    layers: list[eqx.nn.Linear]
    norms: list[eqx.nn.LayerNorm] | None
    activation: str = eqx.field(static=True)
    activate_output: bool = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "relu",
        *,
        layer_norm: bool = False,
        activate_output: bool = False,
        key: PRNGKeyArray,
    ):
        _activation(activation)
        sizes = [int(in_size), *[int(h) for h in hidden_sizes], int(out_size)]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = [
            eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        ]
        activated = sizes[1:] if activate_output else sizes[1:-1]
        self.norms = [eqx.nn.LayerNorm(s) for s in activated] if layer_norm else None
        self.activation = activation
        self.activate_output = bool(activate_output)

    def __call__(self, x: ArrayLike) -> Float[Array, " out"]:
        act = _activation(self.activation)
        x = jnp.ravel(x).astype(jnp.float32)
        hidden = self.layers if self.activate_output else self.layers[:-1]
        for i, layer in enumerate(hidden):
            x = _linear(layer, x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = act(x)
        return x if self.activate_output else _linear(self.layers[-1], x)


def _linear(layer: eqx.nn.Linear, x: Float[Array, " i"]) -> Float[Array, " o"]:
    """``layer(x)`` written as ``x @ Wᵀ + b``: vmapped over a batch, XLA's dot then yields
    ``[batch, out]`` directly, where ``W @ x`` yields ``[out, batch]`` and a transpose per
    layer (a hand check on the 2-core CPU, not a committed benchmark: SAC's update on
    Pendulum 1.5x faster at 8 vmapped seeds, 1.4x at one). Same parameters and result as
    ``layer(x)``."""
    y = x @ layer.weight.T
    return y if layer.bias is None else y + layer.bias


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def _conv(conv: eqx.nn.Conv2d, x: Float[Array, "c h w"]) -> Float[Array, "o h2 w2"]:
    """``conv(x)`` ('VALID' padding) as patch extraction and one matmul.

    Same result as ``eqx.nn.Conv2d.__call__``. Measured on the 2-core CPU for the MinAtar
    network (update step, forward and gradient): XLA's convolution was 1.5× faster at batch 32
    but 5–10× slower at batch 128, where PQN's minibatches are; patches + matmul grow
    linearly with the batch, with or without a ``vmap`` over seeds.
    """
    patches = jax.lax.conv_general_dilated_patches(x[None], conv.kernel_size, conv.stride, "VALID")
    weight = conv.weight.reshape(conv.out_channels, -1)  # channel-major, like the patches
    return jnp.einsum("ok,khw->ohw", weight, patches[0]) + conv.bias


def _channel_norm(norm: eqx.nn.LayerNorm, x: Float[Array, "c h w"]) -> Float[Array, "c h w"]:
    """``norm`` (a LayerNorm over ``C`` features) applied to the channels of every pixel, as
    Flax's ``LayerNorm`` on an NHWC map; written with reductions over axis 0 rather than a
    double ``vmap`` of ``norm``, which compiled to a slow program on CPU."""
    mean = jnp.mean(x, axis=0, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + norm.eps)
    return y * norm.weight[:, None, None] + norm.bias[:, None, None]


def _check_image(obs_shape: Sequence[int], min_size: int, name: str) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in obs_shape)
    if len(shape) != 3 or min(shape[:2]) < min_size:
        raise ValueError(
            f"network: {name} needs one image observation [height, width, channels] of at "
            f"least {min_size}×{min_size}, got shape {shape}"
        )
    return shape  # type: ignore[return-value]


class ConvTorso(eqx.Module):
    """Convolutions then one fully connected layer, each normalised (optionally) and
    activated: ``obs [H, W, C] ↦ features [out_features]``. Built by ``MinAtarCNN`` and
    ``NatureCNN``; observations are channels-last (gymnax's layout) and scaled by
    ``input_scale`` before the first convolution."""

    convs: list[eqx.nn.Conv2d]
    linear: eqx.nn.Linear
    norms: list[eqx.nn.LayerNorm] | None
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    out_features: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    input_scale: float = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        convs: Sequence[tuple[int, int, int]],
        out_features: int,
        *,
        activation: str = "relu",
        layer_norm: bool = False,
        input_scale: float = 1.0,
        key: PRNGKeyArray,
    ):
        _activation(activation)
        h, w, c = (int(d) for d in obs_shape)
        keys = jax.random.split(key, len(convs) + 1)
        self.convs = []
        for (channels, kernel, stride), k in zip(convs, keys[:-1], strict=True):
            self.convs.append(eqx.nn.Conv2d(c, channels, kernel, stride, key=k))
            h, w, c = _conv_out(h, kernel, stride), _conv_out(w, kernel, stride), channels
        self.linear = eqx.nn.Linear(h * w * c, int(out_features), key=keys[-1])
        sizes = [conv.out_channels for conv in self.convs] + [int(out_features)]
        self.norms = [eqx.nn.LayerNorm(s) for s in sizes] if layer_norm else None
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.out_features = int(out_features)
        self.activation = activation
        self.input_scale = float(input_scale)

    def __call__(self, obs: ArrayLike) -> Float[Array, " features"]:
        act = _activation(self.activation)
        x = jnp.transpose(obs.astype(jnp.float32) * self.input_scale, (2, 0, 1))  # HWC → CHW
        for i, conv in enumerate(self.convs):
            x = _conv(conv, x)
            if self.norms is not None:
                x = _channel_norm(self.norms[i], x)
            x = act(x)
        x = self.linear(jnp.ravel(x))
        if self.norms is not None:
            x = self.norms[-1](x)
        return act(x)


def MinAtarCNN(  # noqa: N802 (a constructor, named like the module it returns)
    obs_shape: Sequence[int],
    *,
    activation: str = "relu",
    layer_norm: bool = False,
    key: PRNGKeyArray,
) -> ConvTorso:
    """The MinAtar network torso (Young & Tian, 2019): one 3×3 convolution with 16 channels,
    stride 1, no padding, then a 128-unit fully connected layer, both activated.

    ``[10, 10, C] → [8, 8, 16] → 1024 → 128`` features (a Q-head on top makes the paper's DQN
    network). MinAtar observations are 0/1 floats, so no input scaling.

    Example:
        >>> torso = MinAtarCNN((10, 10, 4), key=key)
        >>> torso(obs).shape  # (128,)
    """
    shape = _check_image(obs_shape, 3, "minatar_cnn")
    return ConvTorso(
        shape, [(16, 3, 1)], 128, activation=activation, layer_norm=layer_norm, key=key
    )


def NatureCNN(  # noqa: N802
    obs_shape: Sequence[int],
    *,
    activation: str = "relu",
    layer_norm: bool = False,
    input_scale: float = 1.0 / 255.0,
    key: PRNGKeyArray,
) -> ConvTorso:
    """The Nature-DQN network torso (Mnih et al., 2015): convolutions 32 × 8×8 stride 4,
    64 × 4×4 stride 2, 64 × 3×3 stride 1, then a 512-unit fully connected layer, all ReLU.

    ``[84, 84, 4] → [20, 20, 32] → [9, 9, 64] → [7, 7, 64] → 512`` features. Pixels in
    ``[0, 255]`` are scaled by ``input_scale = 1/255``. Needs images of at least 36×36.

    Example:
        >>> torso = NatureCNN((84, 84, 4), key=key)
        >>> torso(frames).shape  # (512,)
    """
    shape = _check_image(obs_shape, 36, "nature_cnn")
    convs = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    return ConvTorso(
        shape,
        convs,
        512,
        activation=activation,
        layer_norm=layer_norm,
        input_scale=input_scale,
        key=key,
    )


TORSOS = ("mlp", "minatar_cnn", "nature_cnn")


def torso_for(obs_shape: Sequence[int], network: str = "auto") -> str:
    """The torso a Q-network uses for ``obs_shape``: ``network`` itself if it is one of
    ``TORSOS``, or for ``"auto"``: an image ``[H, W, C]`` of at least 36×36 gets
    ``"nature_cnn"``, a smaller image (MinAtar's 10×10×C) ``"minatar_cnn"``, anything else
    ``"mlp"``.

    Raises:
        ValueError: ``network: ...`` for an unknown name or a CNN that cannot take the shape.
    """
    shape = tuple(int(d) for d in obs_shape)
    if network not in ("auto", *TORSOS):
        raise ValueError(f"network: must be 'auto' or one of {list(TORSOS)}, got {network!r}")
    if network == "auto":
        if len(shape) != 3 or min(shape[:2]) < 3:
            return "mlp"
        return "nature_cnn" if min(shape[:2]) >= 36 else "minatar_cnn"
    if network != "mlp":
        _check_image(shape, 36 if network == "nature_cnn" else 3, network)
    return network


class QNetwork(eqx.Module):
    """Q-network ``s ↦ Q(s, ·)``: a torso (MLP or CNN) and a linear head, optionally dueling.

    Dueling: ``Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')`` (Wang et al., 2016).
    ``torso`` is ``"mlp"`` (flattens any observation; ``hidden_sizes`` apply), or
    ``"minatar_cnn"`` / ``"nature_cnn"`` for image observations (``MinAtarCNN``,
    ``NatureCNN``; their sizes are the papers'), or ``"auto"`` (see ``torso_for``).
    ``layer_norm`` normalises every hidden layer before its activation (PQN).

    Example:
        >>> q_net = QNetwork(obs_shape=(4,), num_actions=2, hidden_sizes=(64, 64), key=key)
        >>> q_net(obs).shape  # (2,)
        >>> QNetwork((10, 10, 4), 3, torso="minatar_cnn", key=key)
    """

    torso: MLP | ConvTorso
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
        torso: str = "mlp",
        layer_norm: bool = False,
        key: PRNGKeyArray,
    ):
        if not hidden_sizes:
            raise ValueError("hidden_sizes must name at least one hidden layer")
        if int(num_actions) < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        torso_key, head_key, value_key = jax.random.split(key, 3)
        kind = torso_for(obs_shape, torso)
        if kind == "mlp":
            *torso_sizes, last = [int(h) for h in hidden_sizes]
            self.torso = MLP(
                _flat_size(obs_shape),
                last,
                torso_sizes,
                activation,
                layer_norm=layer_norm,
                activate_output=True,
                key=torso_key,
            )
        else:
            make = MinAtarCNN if kind == "minatar_cnn" else NatureCNN
            self.torso = make(
                obs_shape, activation=activation, layer_norm=layer_norm, key=torso_key
            )
            last = self.torso.out_features
        self.head = eqx.nn.Linear(last, int(num_actions), key=head_key)
        self.value_head = eqx.nn.Linear(last, 1, key=value_key) if dueling else None
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.num_actions = int(num_actions)

    def __call__(self, obs: ArrayLike) -> Float[Array, " n_actions"]:
        _check_obs(obs, self.obs_shape)
        h = self.torso(obs)
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


def _check_obs(obs: ArrayLike, obs_shape: tuple[int, ...]) -> None:
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
        log_std_init: Real[ArrayLike, ""] = 0.0,
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

    def __call__(self, obs: ArrayLike) -> Categorical | DiagGaussian:
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

    def __call__(self, obs: ArrayLike) -> Float[Array, ""]:
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
        log_std_init: Real[ArrayLike, ""] = 0.0,
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

    def __call__(self, obs: ArrayLike) -> tuple[Categorical | DiagGaussian, Float[Array, ""]]:
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


# --------------------------------------------------------------------------------------------
# Continuous control (SAC, TD3, DDPG). Layers keep Equinox's default initialisation
# (``eqx.nn.Linear``: weights and biases uniform in ±1/√fan_in), as the reference SAC/TD3 code
# keeps PyTorch's.


def _check_action_dim(action_dim: int) -> int:
    if int(action_dim) < 1:
        raise ValueError(f"action_dim must be >= 1, got {action_dim}")
    return int(action_dim)


def _check_action(action: ArrayLike, action_dim: int) -> None:
    if tuple(jnp.shape(action)) != (action_dim,):
        raise ValueError(
            f"action: expected shape {(action_dim,)} (one action; vmap over a batch), "
            f"got {tuple(jnp.shape(action))}"
        )


class QCritic(eqx.Module):
    """Q(s, a): an MLP on concat(flattened obs, action) -> scalar.

    Equinox's default initialisation (uniform ±1/√fan_in), as in the SAC and TD3 papers' code.

    Example:
        >>> q = QCritic((3,), 1, key=key)
        >>> q(obs, action).shape  # ()
    """

    net: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        key: PRNGKeyArray,
    ):
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = _check_action_dim(action_dim)
        in_size = _flat_size(obs_shape) + self.action_dim
        self.net = MLP(in_size, 1, hidden_sizes, activation, key=key)

    def __call__(self, obs: ArrayLike, action: ArrayLike) -> Float[Array, ""]:
        _check_obs(obs, self.obs_shape)
        _check_action(action, self.action_dim)
        x = jnp.concatenate([jnp.ravel(obs), jnp.ravel(action)]).astype(jnp.float32)
        return self.net(x)[0]


class CriticEnsemble(eqx.Module):
    """K independent QCritics whose parameters are stacked on a leading axis (built with
    eqx.filter_vmap over K keys) and evaluated with one vmap over the stack — not K Python
    copies.

    ``s, a ↦ [Q_1(s, a), …, Q_K(s, a)]``; SAC and TD3 take the minimum of two (clipped double
    Q; Fujimoto et al., 2018). Critic ``k`` is ``QCritic(..., key=jax.random.split(key, K)[k])``
    and ``jax.tree.map(lambda x: x[k], ensemble.critics)`` slices it out.

    Example:
        >>> critics = CriticEnsemble((3,), 1, num_critics=2, key=key)
        >>> critics(obs, action).shape  # (2,)
    """

    critics: QCritic
    num_critics: int = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        num_critics: int = 2,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        key: PRNGKeyArray,
    ):
        if int(num_critics) < 1:
            raise ValueError(f"num_critics must be >= 1, got {num_critics}")
        _activation(activation)  # fail here, not inside the vmapped trace

        def make(k: PRNGKeyArray) -> QCritic:
            return QCritic(obs_shape, action_dim, hidden_sizes, activation, key=k)

        self.critics = eqx.filter_vmap(make)(jax.random.split(key, int(num_critics)))
        self.num_critics = int(num_critics)

    def __call__(self, obs: ArrayLike, action: ArrayLike) -> Float[Array, " K"]:
        return eqx.filter_vmap(lambda critic: critic(obs, action))(self.critics)


class DeterministicActor(eqx.Module):
    """μ(s) in [-1, 1]^d (tanh output) — TD3/DDPG's actor; the algorithm maps it to the env
    box with policies.scale_action.

    ``μ(s) = tanh(MLP(s))`` (Lillicrap et al., 2016; Fujimoto et al., 2018), with Equinox's
    default initialisation.

    Example:
        >>> mu = DeterministicActor((3,), 1, key=key)
        >>> scale_action(mu(obs), low, high)
    """

    net: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        key: PRNGKeyArray,
    ):
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = _check_action_dim(action_dim)
        self.net = MLP(_flat_size(obs_shape), self.action_dim, hidden_sizes, activation, key=key)

    def __call__(self, obs: ArrayLike) -> Float[Array, " d"]:
        _check_obs(obs, self.obs_shape)
        return jnp.tanh(self.net(obs))


class SquashedGaussianActor(eqx.Module):
    """π(·|s) = TanhGaussian(mean, log_std), both heads from one MLP torso; log_std bounded
    smoothly into [log_std_min, log_std_max] by log_std_min + 0.5·(max − min)·(tanh(x) + 1).

    SAC's actor (Haarnoja et al., 2018). The MLP's last layer has ``2·d`` outputs: the mean
    head, then the raw log-std head ``x``. Equinox's default initialisation.

    Example:
        >>> pi = SquashedGaussianActor((3,), 1, key=key)
        >>> action, log_prob = pi(obs).sample_and_log_prob(sample_key)
    """

    net: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        *,
        key: PRNGKeyArray,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ):
        if not float(log_std_min) < float(log_std_max):
            raise ValueError(
                f"log_std_min must be < log_std_max, got {log_std_min} and {log_std_max}"
            )
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = _check_action_dim(action_dim)
        self.log_std_min = float(log_std_min)
        self.log_std_max = float(log_std_max)
        out_size = 2 * self.action_dim
        self.net = MLP(_flat_size(obs_shape), out_size, hidden_sizes, activation, key=key)

    def __call__(self, obs: ArrayLike) -> TanhGaussian:
        _check_obs(obs, self.obs_shape)
        mean, raw_log_std = jnp.split(self.net(obs), 2)
        half_range = 0.5 * (self.log_std_max - self.log_std_min)
        log_std = self.log_std_min + half_range * (jnp.tanh(raw_log_std) + 1.0)
        return TanhGaussian(mean, log_std)


class ResidualMLP(eqx.Module):
    """``x ↦ h``: a linear embedding to ``width`` features, then ``num_blocks`` residual blocks
    ``h ← h + W₂·relu(W₁·relu(LayerNorm(h)))`` (pre-activation, He et al. 2016), activated
    output. AlphaZero's residual tower, fully connected for small boards."""

    embed: eqx.nn.Linear
    norms: list[eqx.nn.LayerNorm]
    inner: list[eqx.nn.Linear]
    outer: list[eqx.nn.Linear]
    out_features: int = eqx.field(static=True)

    def __init__(self, in_size: int, width: int, num_blocks: int, *, key: PRNGKeyArray):
        keys = jax.random.split(key, 2 * num_blocks + 1)
        self.embed = eqx.nn.Linear(int(in_size), int(width), key=keys[0])
        self.norms = [eqx.nn.LayerNorm(int(width)) for _ in range(num_blocks)]
        self.inner = [eqx.nn.Linear(width, width, key=k) for k in keys[1 : num_blocks + 1]]
        self.outer = [eqx.nn.Linear(width, width, key=k) for k in keys[num_blocks + 1 :]]
        self.out_features = int(width)

    def __call__(self, x: ArrayLike) -> Float[Array, " width"]:
        h = _linear(self.embed, jnp.ravel(x).astype(jnp.float32))
        for norm, inner, outer in zip(self.norms, self.inner, self.outer, strict=True):
            h = h + _linear(outer, jax.nn.relu(_linear(inner, jax.nn.relu(norm(h)))))
        return jax.nn.relu(h)


class PolicyValueNetwork(eqx.Module):
    """AlphaZero's network ``s ↦ (p, v)`` (Silver et al. 2017): policy logits over the moves
    and a value ``v ∈ [−1, 1]`` (tanh), the expected outcome for the player to move.

    ``torso="mlp"``: a ``ResidualMLP`` of ``width`` features and ``num_blocks`` blocks (small
    boards such as Tic-Tac-Toe's 3×3×2); ``"cnn"``: two 3×3 convolutions of ``width`` channels
    and a dense layer (boards ``[H, W, C]`` of at least 5×5, such as Connect Four's 6×7×2);
    ``"auto"`` picks ``"cnn"`` for such boards, else ``"mlp"``.

    Example:
        >>> net = PolicyValueNetwork((3, 3, 2), 9, key=key)
        >>> logits, value = net(obs)      # [9], []
    """

    torso: ResidualMLP | ConvTorso
    policy_head: eqx.nn.Linear
    value_head: MLP
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: Sequence[int],
        num_actions: int,
        *,
        width: int = 64,
        num_blocks: int = 2,
        torso: str = "auto",
        key: PRNGKeyArray,
    ):
        shape = tuple(int(d) for d in obs_shape)
        board = len(shape) == 3 and min(shape[:2]) >= 5
        if torso not in ("auto", "mlp", "cnn"):
            raise ValueError(f"network: must be 'auto', 'mlp' or 'cnn', got {torso!r}")
        if torso == "cnn" and not board:
            raise ValueError(f"network: 'cnn' needs a board [H, W, C] of 5×5 or more, got {shape}")
        torso_key, policy_key, value_key = jax.random.split(key, 3)
        if torso == "cnn" or (torso == "auto" and board):
            convs = [(int(width), 3, 1), (int(width), 3, 1)]
            self.torso = ConvTorso(shape, convs, 2 * int(width), key=torso_key)
        else:
            self.torso = ResidualMLP(_flat_size(shape), width, num_blocks, key=torso_key)
        features = self.torso.out_features
        self.policy_head = eqx.nn.Linear(features, int(num_actions), key=policy_key)
        self.value_head = MLP(features, 1, (int(width),), "relu", key=value_key)
        self.obs_shape = shape

    def __call__(self, obs: ArrayLike) -> tuple[Float[Array, " n_actions"], Float[Array, ""]]:
        _check_obs(obs, self.obs_shape)
        h = self.torso(obs)
        return _linear(self.policy_head, h), jnp.tanh(self.value_head(h)[0])
