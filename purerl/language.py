"""L2: a small causal transformer language model (Equinox) and what RLHF does with one:
sample a response under a key, score tokens, read a scalar head.

``CausalTransformer(tokens [T]) -> (logits [T, V], values [T])``: the output at position ``t``
sees tokens ``0..t`` only and predicts token ``t + 1``; ``values[t]`` is a scalar head on the
same features (the critic of a policy, or, read at the last position, the score of a reward
model). One class serves the three models of RLHF: the policy (logits and value head), the
frozen reference (logits), the reward model (the value head at the last token).

Everything works on ONE sequence; ``jax.vmap`` batches it. A sequence starts with a
beginning-of-sequence token (``BOS = 0`` by default). ``sample`` does not mask it: a model
that emits it mid-sequence writes what the task's grammar calls an ungrammatical pair.

Reference: Vaswani et al. (2017), "Attention is all you need"; the pre-LayerNorm block of
Xiong et al. (2020), "On layer normalization in the transformer architecture"; GPT-2's
learned position embeddings (Radford et al. 2019).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl.preferences import token_log_probs

__all__ = [
    "BOS",
    "CausalTransformer",
    "sample",
    "score_tokens",
    "sequence_reward",
]

BOS = 0


class _Block(eqx.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    norm1: eqx.nn.LayerNorm
    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    norm2: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, width: int, heads: int, *, key: PRNGKeyArray):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1 = eqx.nn.LayerNorm(width)
        self.qkv = eqx.nn.Linear(width, 3 * width, key=k1)
        self.out = eqx.nn.Linear(width, width, key=k2)
        self.norm2 = eqx.nn.LayerNorm(width)
        self.up = eqx.nn.Linear(width, 4 * width, key=k3)
        self.down = eqx.nn.Linear(4 * width, width, key=k4)
        self.heads = heads

    def attention(self, x: Float[Array, "T D"]) -> Float[Array, "T D"]:
        """Causal multi-head self-attention: ``softmax(q kᵀ / √d_h + mask) v`` per head."""
        n, width = x.shape
        q, k, v = jnp.split(jax.vmap(self.qkv)(x).reshape(n, 3, self.heads, -1), 3, axis=1)
        q, k, v = q[:, 0], k[:, 0], v[:, 0]  # [T, heads, d_h]
        logits = jnp.einsum("thd,shd->hts", q, k) / jnp.sqrt(q.shape[-1])
        causal = jnp.tril(jnp.ones((n, n), bool))
        weights = jax.nn.softmax(jnp.where(causal, logits, -jnp.inf), axis=-1)
        return jax.vmap(self.out)(jnp.einsum("hts,shd->thd", weights, v).reshape(n, width))

    def __call__(self, x: Float[Array, "T D"]) -> Float[Array, "T D"]:
        x = x + self.attention(jax.vmap(self.norm1)(x))
        h = jax.vmap(self.norm2)(x)
        return x + jax.vmap(self.down)(jax.nn.gelu(jax.vmap(self.up)(h)))


class CausalTransformer(eqx.Module):
    """A decoder-only transformer over ``vocab_size`` tokens, sequences up to ``max_len``.

    ``lm(tokens [T]) -> (logits [T, vocab_size], values [T])``; position ``t`` attends to
    ``0..t``. ``features(tokens) -> [T, width]`` is the final layer-normed hidden state.

    Args:
        vocab_size: number of token ids (the BOS token included).
        max_len: longest sequence (learned position embeddings).
        width: model width ``d``; ``heads`` must divide it.
        depth: number of transformer blocks.
        heads: attention heads.
        key: initialisation key.

    Raises:
        ValueError: a size that is not positive, or ``heads`` not dividing ``width``.

    Example:
        >>> lm = CausalTransformer(8, 16, key=jax.random.PRNGKey(0))
        >>> logits, values = lm(jnp.array([0, 3, 5]))     # [3, 8], [3]
    """

    embedding: eqx.nn.Embedding
    positions: Float[Array, "L D"]
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    lm_head: eqx.nn.Linear
    value_head: eqx.nn.Linear
    vocab_size: int = eqx.field(static=True)
    max_len: int = eqx.field(static=True)

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        width: int = 32,
        depth: int = 2,
        heads: int = 2,
        key: PRNGKeyArray,
    ):
        for name, v in (("vocab_size", vocab_size), ("max_len", max_len), ("width", width)):
            if int(v) < 1:
                raise ValueError(f"{name}: must be > 0, got {v}")
        if depth < 0 or heads < 1 or width % heads:
            raise ValueError(
                f"heads: must be >= 1 and divide width={width} (depth >= 0), "
                f"got heads={heads}, depth={depth}"
            )
        keys = jax.random.split(key, depth + 4)
        self.embedding = eqx.nn.Embedding(vocab_size, width, key=keys[0])
        self.positions = 0.02 * jax.random.normal(keys[1], (max_len, width))
        self.blocks = tuple(_Block(width, heads, key=k) for k in keys[4:])
        self.norm = eqx.nn.LayerNorm(width)
        self.lm_head = eqx.nn.Linear(width, vocab_size, key=keys[2])
        self.value_head = eqx.nn.Linear(width, 1, key=keys[3])
        self.vocab_size = int(vocab_size)
        self.max_len = int(max_len)

    def features(self, tokens: Int[ArrayLike, " T"]) -> Float[Array, "T D"]:
        """The final hidden states, layer-normed."""
        tokens = jnp.asarray(tokens)
        x = jax.vmap(self.embedding)(tokens) + self.positions[: tokens.shape[0]]
        for block in self.blocks:
            x = block(x)
        return jax.vmap(self.norm)(x)

    def __call__(
        self, tokens: Int[ArrayLike, " T"]
    ) -> tuple[Float[Array, "T V"], Float[Array, " T"]]:
        h = self.features(tokens)
        return jax.vmap(self.lm_head)(h), jax.vmap(self.value_head)(h)[:, 0]


def score_tokens(
    lm: CausalTransformer, tokens: Int[ArrayLike, " T"]
) -> tuple[Float[Array, " T-1"], Float[Array, "T-1 V"], Float[Array, " T-1"]]:
    """``(log_probs, logits, values)`` of ``tokens[1:]`` under ``lm``: the prediction for each
    token after the first (the output at ``t`` predicts ``t + 1``), and the value of the
    state each one was chosen in."""
    logits, values = lm(tokens)
    logits, values = logits[:-1], values[:-1]
    return token_log_probs(logits, jnp.asarray(tokens)[1:]), logits, values


def sequence_reward(
    reward_model: CausalTransformer, tokens: Int[ArrayLike, " T"]
) -> Float[Array, ""]:
    """A reward model's score of a whole sequence: its scalar head at the last token (which
    attends to every token before it)."""
    return reward_model(tokens)[1][-1]


def sample(
    lm: CausalTransformer,
    key: PRNGKeyArray,
    length: int,
    *,
    temperature: Real[ArrayLike, ""] = 1.0,
    bos: int = BOS,
) -> Int[Array, " T"]:
    """Sample ``length`` tokens after ``bos`` from ``lm`` (``softmax(logits / temperature)``):
    the sequence ``[bos, y_1, ..., y_length]``. Same key, same sequence.

    Each token is drawn from the model's prediction at the previous position; the model is
    re-run on the fixed-size buffer every step (the positions after ``t`` are not yet
    written, and the causal mask keeps them out of position ``t``'s prediction).

    Raises:
        ValueError: ``length < 1`` or longer than ``lm.max_len - 1``.
    """
    if int(length) < 1 or int(length) + 1 > lm.max_len:
        raise ValueError(f"length: must be in [1, max_len - 1 = {lm.max_len - 1}], got {length}")
    tokens = jnp.full((int(length) + 1,), bos, jnp.int32)

    def next_token(tokens, xs):
        t, k = xs
        logits = lm(tokens)[0][t]
        y = jax.random.categorical(k, logits / temperature).astype(jnp.int32)
        return tokens.at[t + 1].set(y), None

    steps = (jnp.arange(int(length)), jax.random.split(key, int(length)))
    return jax.lax.scan(next_token, tokens, steps)[0]
