"""Inventory management: order stock each period, sell to stochastic demand, pay to hold it.

A single-product, periodic-review, lost-sales inventory problem (the textbook setting of
Porteus (2002), "Foundations of Stochastic Inventory Theory", and Powell (2022),
"Reinforcement Learning and Stochastic Optimization", ch. 1). One step is one period, in this
order (``inventory_transition`` does exactly this; ``step`` draws the demand first):

1. **Order.** Action ``a`` orders ``q = order_sizes[a]`` units and pays for them now:
   ``ordering cost = fixed_cost · [q > 0] + unit_cost · q``.
2. **Pipeline.** The order joins the pipeline of outstanding orders ``lead_time`` periods
   ahead (``lead_time = 0``: it arrives this period).
3. **Delivery.** The units due this period arrive: ``stock ← min(stock + arriving, capacity)``;
   units that do not fit are thrown away (``overflow``; they were paid for in step 1).
4. **Demand.** ``D ~ Poisson(demand_mean)`` customers arrive; ``sales = min(stock, D)``, the
   ``lost = D − sales`` others go away (no backlog), and ``stock ← stock − sales``.
5. **Reward.** ``price · sales − ordering cost − holding_cost · stock − lost_sale_cost · lost``
   (holding is charged on what is left at the end of the period).

The episode never terminates; it is truncated after ``max_steps_in_episode`` periods (a time
limit, so agents bootstrap there). The observation is ``[stock, pipeline_0, ...,
pipeline_{L−1}] / capacity`` (``float32 [1 + max_lead_time]``), where ``pipeline_k`` units
arrive ``k`` periods from now (``pipeline_0`` at step 3 of the coming period).

A classical good policy is the reorder-point ``(s, S)`` rule: when the inventory position
(stock plus everything in the pipeline) is at most ``s``, order up to ``S`` (Scarf, 1960).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, no_type_check

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from jaxtyping import Array, ArrayLike, Float, Int, Real

__all__ = ["Inventory", "InventoryParams", "InventoryState", "inventory_transition", "ENVS"]


# A gymnax state/params record is a pytree that JAX and Equinox rebuild through ``__init__``
# with traced, batched or placeholder leaves (``eqx.tree_at``): its fields are documented as
# (possibly traced or batched) numbers but not checked at runtime (``no_type_check``).
@no_type_check
@struct.dataclass
class InventoryState(environment.EnvState):
    """Units on hand, units in the pipeline (``pipeline[k]`` arrives in ``k`` periods), time."""

    stock: jax.Array
    pipeline: jax.Array
    time: Int[ArrayLike, "..."]


@no_type_check
@struct.dataclass
class InventoryParams(environment.EnvParams):
    """Economics, demand, capacity, lead time and horizon (all vmappable)."""

    capacity: Int[ArrayLike, "..."] = 20
    lead_time: Int[ArrayLike, "..."] = 2
    demand_mean: Real[ArrayLike, "..."] = 3.0
    price: Real[ArrayLike, "..."] = 2.0
    unit_cost: Real[ArrayLike, "..."] = 1.0
    fixed_cost: Real[ArrayLike, "..."] = 2.0
    holding_cost: Real[ArrayLike, "..."] = 0.1
    lost_sale_cost: Real[ArrayLike, "..."] = 1.0
    initial_stock: Int[ArrayLike, "..."] = 10
    max_steps_in_episode: Int[ArrayLike, "..."] = 50


def inventory_transition(
    state: InventoryState,
    order: Int[ArrayLike, ""],
    demand: Int[ArrayLike, ""],
    params: InventoryParams,
) -> tuple[InventoryState, Float[Array, ""], dict[str, ArrayLike]]:
    """One period given the order size and the demand (steps 1–5 of the module docstring).

    Returns:
        ``(new_state, reward, info)``; ``info`` holds ``order``, ``arrived``, ``overflow``,
        ``demand``, ``sales``, ``lost`` and the ``ordering_cost``.
    """
    order = jnp.asarray(order, jnp.int32)
    ordering_cost = params.fixed_cost * (order > 0) + params.unit_cost * order
    incoming = jnp.concatenate([state.pipeline, jnp.zeros((1,), jnp.int32)])
    incoming = incoming.at[params.lead_time].add(order)
    arrived = incoming[0]
    stock = jnp.minimum(state.stock + arrived, params.capacity)
    overflow = state.stock + arrived - stock
    sales = jnp.minimum(stock, demand)
    lost = demand - sales
    stock = stock - sales
    reward = (
        params.price * sales
        - ordering_cost
        - params.holding_cost * stock
        - params.lost_sale_cost * lost
    )
    new_state = InventoryState(stock=stock, pipeline=incoming[1:], time=state.time + 1)
    info = {
        "order": order,
        "arrived": arrived,
        "overflow": overflow,
        "demand": demand,
        "sales": sales,
        "lost": lost,
        "ordering_cost": ordering_cost,
    }
    return new_state, jnp.asarray(reward, jnp.float32), info


class Inventory(environment.Environment[InventoryState, InventoryParams]):
    """Periodic-review lost-sales inventory (see the module docstring).

    Args:
        order_sizes: units ordered by each action (fixes the action space).
        max_lead_time: longest lead time the pipeline can hold (fixes the observation size).
        **params: defaults of ``InventoryParams`` fields (e.g. ``lead_time=1``).

    Example:
        >>> env, params = purerl.envs.make("Inventory-v0", demand_mean=4.0)
    """

    def __init__(
        self,
        order_sizes: Sequence[int] = (0, 2, 4, 6, 8, 10, 12),
        max_lead_time: int = 4,
        **params: Any,
    ):
        self.order_sizes = tuple(int(q) for q in order_sizes)
        self.max_lead_time = int(max_lead_time)
        if not self.order_sizes or min(self.order_sizes) < 0:
            raise ValueError(f"order_sizes: must be non-empty and >= 0, got {order_sizes}")
        if self.max_lead_time < 1:
            raise ValueError(f"max_lead_time: must be >= 1, got {max_lead_time}")
        self._defaults = _checked_params(InventoryParams(**params), self.max_lead_time)

    @property
    def default_params(self) -> InventoryParams:
        return self._defaults

    def step_env(self, key, state: InventoryState, action, params: InventoryParams):
        order = jnp.asarray(self.order_sizes, jnp.int32)[action]
        demand = jax.random.poisson(key, params.demand_mean).astype(jnp.int32)
        new_state, reward, info = inventory_transition(state, order, demand, params)
        return self.get_obs(new_state, params), new_state, reward, jnp.array(False), info

    def reset_env(self, key, params: InventoryParams):
        state = InventoryState(
            stock=jnp.int32(params.initial_stock),
            pipeline=jnp.zeros((self.max_lead_time,), jnp.int32),
            time=0,
        )
        return self.get_obs(state, params), state

    def get_obs(self, state: InventoryState, params: Any = None, key: Any = None) -> Array:
        params = self.default_params if params is None else params
        units = jnp.concatenate([state.stock[None], state.pipeline])
        return units.astype(jnp.float32) / params.capacity

    def is_terminated(self, state: InventoryState, params: InventoryParams) -> Array:
        return jnp.array(False)

    @property
    def name(self) -> str:
        return "Inventory-v0"

    @property
    def num_actions(self) -> int:
        return len(self.order_sizes)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(len(self.order_sizes))

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (1 + self.max_lead_time,), jnp.float32)


def _checked_params(p: InventoryParams, max_lead_time: int) -> InventoryParams:
    checks = [
        ("capacity", p.capacity >= 1, ">= 1"),
        ("lead_time", 0 <= p.lead_time <= max_lead_time, f"in [0, max_lead_time={max_lead_time}]"),
        ("demand_mean", p.demand_mean >= 0, ">= 0"),
        ("initial_stock", 0 <= p.initial_stock <= p.capacity, "in [0, capacity]"),
        ("max_steps_in_episode", p.max_steps_in_episode >= 1, ">= 1"),
    ]
    for name in ("price", "unit_cost", "fixed_cost", "holding_cost", "lost_sale_cost"):
        checks.append((name, getattr(p, name) >= 0, ">= 0"))
    for name, ok, rule in checks:
        if not ok:
            raise ValueError(f"{name}: must be {rule}, got {getattr(p, name)}")
    return p


ENVS = {"Inventory-v0": Inventory}
