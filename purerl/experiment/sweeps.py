"""L4 configs and sweeps: a config from the command line's strings, the Cartesian grid of a
sweep (every point built, so checked, before anything compiles), the grid stacked into one
batch of float leaves, and a JSON-friendly view of a config."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from purerl.algorithms import core
from purerl.envs import check_env_id

__all__ = ["config_to_dict", "make_config", "make_grid", "sweepable_fields"]


def _algorithm(name: str) -> core.Algorithm:
    return core.get(name)


def _unknown_field(name: str, fields: Sequence[str], algorithm: str) -> ValueError:
    close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"{name}: not a field of {algorithm}.Config.{hint}")


def _parse_value(field: dataclasses.Field, default: Any, text: Any) -> Any:
    if not isinstance(text, str):
        return text
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{field.name}: expected true/false, got {text!r}")
    try:
        if isinstance(default, tuple):
            return tuple(int(x) for x in text.strip("()[] ").split(",") if x.strip())
        if isinstance(default, int):
            return int(float(text)) if float(text).is_integer() else int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(
            f"{field.name}: cannot read {text!r} as {type(default).__name__}"
        ) from None
    return text


def make_config(
    algorithm: str,
    env: str | None = None,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The algorithm's ``Config`` with ``env``, ``steps`` and ``overrides`` (values may be strings
    as typed on the command line). Unknown fields raise ``ValueError`` suggesting close names."""
    return _with_changes(_algorithm(algorithm).Config(), algorithm, env, steps, overrides)


def _with_changes(config: Any, algorithm: str, env=None, steps=None, overrides=None) -> Any:
    if env is not None:
        check_env_id(env)  # a misspelt env id is the first thing to hear about
    fields = {f.name: f for f in dataclasses.fields(config)}
    values: dict[str, Any] = {}
    for name, text in (overrides or {}).items():
        if name not in fields:
            raise _unknown_field(name, list(fields), algorithm)
        values[name] = _parse_value(fields[name], getattr(config, name), text)
    if env is not None:
        values["env_id"] = env
    if steps is not None:
        values["total_steps"] = int(steps)
    return dataclasses.replace(config, **values) if values else config


def sweepable_fields(config: Any) -> list[str]:
    """Config fields a sweep may vary: the float leaves (fields that are not static, i.e. that
    fix no array shape and no part of the compiled program)."""
    return [f.name for f in dataclasses.fields(config) if not f.metadata.get("static", False)]


def make_grid(
    config: Any, sweep: dict[str, Sequence[Any]] | None
) -> tuple[list[dict[str, float]], list[Any]]:
    """The Cartesian grid of ``sweep`` over ``config``: ``(points, configs)``.

    Every config is built (so checked) before anything compiles.

    Raises:
        ValueError: for an unknown field (close names suggested), a field that fixes shapes
            (the sweepable ones are listed), an empty or non-numeric value list, or a value the
            config refuses (e.g. ``gamma`` > 1).
    """
    if not sweep:
        return [{}], [config]
    names = list(sweep)
    allowed = sweepable_fields(config)
    all_fields = [f.name for f in dataclasses.fields(config)]
    algorithm = type(config).__module__.rsplit(".", 1)[-1]
    for name in names:
        if name not in all_fields:
            raise _unknown_field(name, all_fields, algorithm)
        if name not in allowed:
            raise ValueError(
                f"sweep: {name!r} cannot be swept — it fixes array shapes or the compiled "
                f"program, so each value needs its own run. Sweepable fields of {algorithm}: "
                f"{', '.join(allowed)}"
            )
        values = sweep[name]
        if isinstance(values, str | bytes) or len(values) == 0:
            raise ValueError(f"sweep: {name!r} needs a non-empty list of numbers, got {values!r}")
        try:
            [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"sweep: {name!r} values must be numbers, got {values!r}") from None
    points = [
        dict(zip(names, (float(v) for v in combo), strict=True))
        for combo in itertools.product(*(sweep[n] for n in names))
    ]
    return points, [dataclasses.replace(config, **p) for p in points]


def _stack_configs(configs: list[Any], seeds: int) -> Any:
    """One config pytree whose float leaves are ``[configs × seeds]`` float32 arrays
    (``index = config * seeds + seed``)."""

    def stack(*leaves):
        return np.repeat(np.asarray(leaves, np.float32), seeds, axis=0)

    return jax.tree.map(stack, *configs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of every config field."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, jax.Array | np.ndarray):
            v = np.asarray(v).tolist()
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
