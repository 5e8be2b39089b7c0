"""L4 configs and sweeps: a config from the command line's strings, the Cartesian grid of a
sweep (every point built, so checked, before anything compiles), the grid stacked into one
batch of float leaves, and a JSON-friendly view of a config."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Mapping, Sequence
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


class _Errors:
    """Bad-input messages (``"field: what is wrong"``) gathered so that one ``ValueError``
    reports them all, the unknown env id first (a typo there explains the rest)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, error: ValueError | str) -> None:
        if str(error) not in self.lines:
            self.lines.append(str(error))

    def attempt(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, or ``None`` with its ``ValueError`` kept."""
        try:
            return fn(*args)
        except ValueError as error:
            self.add(error)
            return None

    @property
    def env_unknown(self) -> bool:
        return any(line.startswith("env:") for line in self.lines)

    def raise_any(self, header: str | None = None) -> None:
        """Raise one ``ValueError`` of every line (under ``header``, indented), if any."""
        if self.lines:
            ordered = sorted(self.lines, key=lambda line: not line.startswith("env:"))
            text = "\n".join(ordered)
            raise ValueError(f"{header}\n  " + text.replace("\n", "\n  ") if header else text)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _int_from_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "1e5"; "1e400" is inf and "nan" is nan: not whole, refused
        if not number.is_integer():
            raise
        return int(number)


def _from_text(name: str, default: Any, text: str) -> Any:
    """``text`` as typed on the command line, read as the type of ``default``."""
    if isinstance(default, bool):
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise ValueError(f"{name}: expected true/false, got {text!r}")
    try:
        if isinstance(default, tuple):
            return tuple(_int_from_text(x) for x in text.strip("()[] ").split(",") if x.strip())
        if isinstance(default, int):
            return _int_from_text(text)
        if isinstance(default, float):
            return float(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{name}: cannot read {text!r} as {type(default).__name__}") from None
    return text


def _whole(x: Any) -> int | None:
    """``x`` as an ``int`` when it is a whole number (not a bool), else ``None``."""
    if isinstance(x, bool | np.bool_):
        return None
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating) and np.isfinite(x) and float(x).is_integer():
        return int(x)
    return None


def _of_type(name: str, default: Any, value: Any) -> Any:
    """``value`` as the type of ``default`` (the field's type), or ``ValueError`` naming it."""
    if isinstance(default, bool):
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if (whole := _whole(value)) is None:
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        return whole
    if isinstance(default, float):
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        ):
            try:
                return float(value)
            except OverflowError:
                raise ValueError(f"{name}: must be a finite number, got {value!r}") from None
        if isinstance(value, jax.Array | np.ndarray) and value.shape == () and value.dtype != bool:
            return value  # a scalar array is a leaf too
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if isinstance(default, tuple):
        wholes = [_whole(x) for x in value] if isinstance(value, tuple | list) else [None]
        if None in wholes:
            raise ValueError(f"{name}: expected a tuple of whole numbers, got {value!r}")
        return tuple(wholes)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def _parse_value(name: str, default: Any, value: Any) -> Any:
    """``value`` (a string as typed on the command line, or a Python value) as the type of
    ``default``, so that a wrong type is a ``ValueError`` naming the field, not a crash later."""
    if isinstance(value, str) and not isinstance(default, str):
        value = _from_text(name, default, value)
    return _of_type(name, default, value)


def _parse_field(field: dataclasses.Field, current: Any, value: Any) -> Any:
    """``_parse_value`` for one config field. A field whose default is ``None`` (SAC's
    ``target_entropy``: ``None`` means "derive it from the env") takes ``None`` back (typed as
    ``none``) or a value of the type its annotation names."""
    if field.default is not None:
        return _parse_value(field.name, current, value)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return None
    annotation = str(field.type)
    if "Real" in annotation or "float" in annotation:
        return _parse_value(field.name, 0.0, value)
    raise ValueError(f"{field.name}: cannot be set from {value!r}")  # no such field yet


def make_config(
    algorithm: str,
    env: str | None = None,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The algorithm's ``Config`` with ``env``, ``steps`` and ``overrides`` (values may be strings
    as typed on the command line), starting from the algorithm's defaults for that env
    (``core.default_config``: ``Algorithm.env_defaults``, e.g. PPO on Pendulum-v1).

    Raises:
        ValueError: one line per bad change, each starting with its field (an unknown env id
            first, with close ids; an unknown field with close names; a value of the wrong type
            or that the config refuses).
    """
    base = _base_config(_algorithm(algorithm), env, overrides)
    return _with_changes(base, algorithm, env, steps, overrides)


def _base_config(module: core.Algorithm, env: str | None, overrides: Any) -> Any:
    """Where a new run's config starts: ``core.default_config`` for the env asked for (the
    algorithm's ``env_defaults`` for it, e.g. PPO's Pendulum-v1 settings), else ``Config()``.
    The user's fields are applied on top of it."""
    if env is None and isinstance(overrides, Mapping):
        env = overrides.get("env_id")
    if not isinstance(env, str) or env not in module.env_defaults:
        return module.Config()
    return core.default_config(module, env)


def _with_changes(
    config: Any, algorithm: str, env=None, steps=None, overrides=None, *, within=None
) -> Any:
    """``config`` with the changes, or one ``ValueError`` of every bad one (under the heading
    ``"resume: FILE holds a config that cannot be used:"`` for the changes read from ``within``)."""
    errors = _Errors()
    config = _changed(config, algorithm, errors, env, steps, overrides)
    errors.raise_any(
        None if within is None else f"resume: {within} holds a config that cannot be used:"
    )
    return config


def _changed(config: Any, algorithm: str, errors: _Errors, env=None, steps=None, overrides=None):
    """``config`` with every good change; a message for each bad one goes to ``errors``."""
    if overrides is not None and not isinstance(overrides, Mapping):
        errors.add(f"overrides: expected a dict {{field: value}}, got {overrides!r}")
        overrides = None
    changes = dict(overrides or {})
    if env is not None:
        changes["env_id"] = env
    if steps is not None:
        changes["total_steps"] = steps
    fields = {f.name: f for f in dataclasses.fields(config)}
    values: dict[str, Any] = {}
    for name, text in changes.items():
        if name not in fields:
            errors.add(_unknown_field(str(name), list(fields), algorithm))
            continue
        converter = fields[name].metadata.get("converter")
        if converter is not None:  # the field converts it itself (tabular's env_kwargs)
            try:
                converter(text)
                values[name] = text
            except (TypeError, ValueError) as error:
                errors.add(f"{name}: cannot use {text!r} ({error})")
            continue
        try:
            values[name] = _parse_field(fields[name], getattr(config, name), text)
        except ValueError as error:
            errors.add(error)
    if "env_id" in values:
        try:
            check_env_id(values["env_id"])
        except ValueError as error:  # a misspelt env id is the first thing to hear about
            errors.add(error)
            del values["env_id"]
    return _replace_each(config, values, errors)


def _replace_each(config: Any, values: dict[str, Any], errors: _Errors) -> Any:
    """``dataclasses.replace(config, **values)``, leaving out each change that the config's
    check refuses (its message goes to ``errors``) until the rest builds — so every bad field
    is reported, not only the first. When no culprit is found, the unchanged ``config`` is
    returned."""
    values = dict(values)
    while values:
        try:
            return dataclasses.replace(config, **values)
        except ValueError as error:
            errors.add(error)
            culprit = _culprit(config, values, error)
            if culprit is None:
                return config
            del values[culprit]
    return config


def _culprit(config: Any, values: dict[str, Any], error: ValueError) -> str | None:
    """The change ``error`` is about: the field it names, else (a clash with an unchanged
    field, e.g. ``batch_size`` against a smaller ``buffer_size``) the first change without
    which the error goes away."""
    name = str(error).split(":", 1)[0]
    if name in values:
        return name
    for name in values:
        try:
            dataclasses.replace(config, **{k: v for k, v in values.items() if k != name})
            return name
        except ValueError as other:
            if str(other) != str(error):
                return name
    return None


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
            config refuses (e.g. ``gamma`` > 1); one line per problem.
    """
    errors = _Errors()
    grid = _grid(config, sweep, errors)
    errors.raise_any()
    return grid


# More points than this cannot even be listed in reasonable time (a grid is built eagerly).
MAX_GRID_POINTS = 65_536


def _sweep_values(config: Any, name: Any, values: Any, algorithm: str) -> list[float]:
    """The floats of one sweep entry, or ``ValueError`` naming the field."""
    all_fields = [f.name for f in dataclasses.fields(config)]
    if name not in all_fields:
        raise _unknown_field(str(name), all_fields, algorithm)
    allowed = sweepable_fields(config)
    if name not in allowed:
        raise ValueError(
            f"sweep: {name!r} cannot be swept — it fixes array shapes or the compiled "
            f"program, so each value needs its own run. Sweepable fields of {algorithm}: "
            f"{', '.join(allowed)}"
        )
    listed = isinstance(values, Sequence | np.ndarray | jax.Array) and not isinstance(values, str)
    if not listed or not len(values):
        raise ValueError(f"sweep: {name!r} needs a non-empty list of numbers, got {values!r}")
    try:
        return [float(_parse_value(str(name), 0.0, v)) for v in values]
    except ValueError:
        raise ValueError(f"sweep: {name!r} values must be numbers, got {values!r}") from None


def _grid(config: Any, sweep: Any, errors: _Errors) -> tuple[list[dict[str, float]], list[Any]]:
    """``make_grid`` with each problem added to ``errors`` (``([{}], [config])`` if any)."""
    if not sweep:
        return [{}], [config]
    if not isinstance(sweep, Mapping):
        errors.add(f"sweep: expected a dict {{field: [values]}}, got {sweep!r}")
        return [{}], [config]
    algorithm = type(config).__module__.rsplit(".", 1)[-1]
    grid = {}
    for name, values in sweep.items():
        try:
            grid[name] = _sweep_values(config, name, values, algorithm)
        except ValueError as error:
            errors.add(error)
    size = math.prod(len(v) for v in grid.values())
    if size > MAX_GRID_POINTS:
        errors.add(f"sweep: {size:,} points is more than {MAX_GRID_POINTS:,}; split the sweep")
    if len(grid) < len(sweep) or size > MAX_GRID_POINTS:
        return [{}], [config]
    points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    configs = [_replace_each(config, p, errors) for p in points]
    return points, configs


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
