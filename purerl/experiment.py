"""L4: run one algorithm over many seeds, with a progress bar and results on disk.

``run(...)`` (and ``purerl train``) vmaps ``init`` over seeds, then drives the algorithm's
``step`` in jit-compiled chunks of one evaluation period each, so progress can be shown between
chunks. The computation per chunk is exactly the algorithm's ``make_train`` loop cut into
pieces (``common.run_periods`` over fewer periods).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from purerl.algorithms import ALGORITHMS
from purerl.algorithms.common import run_periods

__all__ = ["Result", "run", "make_config", "config_to_dict", "seed_sharding"]


@dataclasses.dataclass
class Result:
    """What ``run`` returns: the config, stacked metrics ``[seeds, ...]`` (NumPy), a summary
    (final greedy return per seed, mean ± std, timings), the output folder and the final
    training state (leaves with a leading seed axis)."""

    algorithm: str
    config: Any
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any]
    out: Path | None
    state: Any = None


def _algorithm(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=3, cutoff=0.3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"algorithm: unknown algorithm {name!r}.{hint} Known: {sorted(ALGORITHMS)}"
        )
    return ALGORITHMS[name]


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
    module = _algorithm(algorithm)
    fields = {f.name: f for f in dataclasses.fields(module.Config)}
    defaults = module.Config()
    values: dict[str, Any] = {}
    for name, text in (overrides or {}).items():
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"{name}: not a field of {algorithm}.Config.{hint}")
        values[name] = _parse_value(fields[name], getattr(defaults, name), text)
    if env is not None:
        values["env_id"] = env
    if steps is not None:
        values["total_steps"] = int(steps)
    return module.Config(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of every config field."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = np.asarray(v).tolist() if isinstance(v, jax.Array | np.ndarray) else v
    return out


def _seed_keys(seeds: int, seed_offset: int) -> jax.Array:
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(seed_offset, seed_offset + seeds))


def seed_sharding(seeds: int, devices: list[jax.Device] | None = None) -> NamedSharding:
    """Sharding of the seed axis over as many ``devices`` as divide ``seeds`` evenly.

    Default devices: all local accelerators; on a CPU, one device. Sharding over several CPU
    host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, then pass
    ``devices=jax.devices()``) runs each device's seeds on its own core — twice the DQN
    throughput on 2 cores — as an opt-in.
    """
    if devices is None:
        local = jax.local_devices()
        devices = local[:1] if local[0].platform == "cpu" else local
    devices = list(devices)
    n = math.gcd(int(seeds), len(devices))
    return NamedSharding(Mesh(np.array(devices[:n]), ("seeds",)), PartitionSpec("seeds"))


def _prepare_out(out: str | Path | None, overwrite: bool) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out: {path} already exists and is not empty; pass overwrite=True "
                "(--overwrite) to replace it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(
    algorithm: str = "dqn",
    env: str | None = None,
    *,
    seeds: int = 1,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    config: Any = None,
    seed_offset: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    devices: list[jax.Device] | None = None,
) -> Result:
    """Train ``seeds`` independent agents (vmapped) and return their metrics.

    Seed ``i`` uses ``jax.random.PRNGKey(seed_offset + i)``, so a seed gives the same run alone
    or among others.

    Args:
        algorithm: a name in ``purerl.algorithms.ALGORITHMS`` (e.g. ``"dqn"``).
        env: environment id (default: the config's).
        seeds: number of seeds, vmapped together.
        steps: total environment steps per seed (default: the config's).
        overrides: config fields to change, e.g. ``{"learning_rate": 3e-4}``.
        config: a ready ``Config`` (then ``env``/``steps``/``overrides`` must be unset).
        out: folder for ``config.json``, ``metrics.npz``, ``metrics.csv``, ``eval.csv`` and
            ``summary.json`` (nothing is written when ``None``).
        overwrite: replace a non-empty ``out`` instead of refusing.
        progress: show a progress bar on stderr.
        devices: devices to shard the seed axis over (default: all local accelerators, or one
            CPU device; see ``seed_sharding``); the results do not depend on it.

    Example:
        >>> result = purerl.run("dqn", "CartPole-v1", seeds=4, steps=50_000)
        >>> result.summary["final_return_mean"]
    """
    module = _algorithm(algorithm)
    if int(seeds) < 1:
        raise ValueError(f"seeds: must be >= 1, got {seeds}")
    if config is None:
        config = make_config(algorithm, env, steps, overrides)
    elif env is not None or steps is not None or overrides:
        raise ValueError("config: pass either a Config or env/steps/overrides, not both")
    module.make_train(config)  # every check, before any compile
    path = _prepare_out(out, overwrite)
    keys = jax.device_put(_seed_keys(int(seeds), seed_offset), seed_sharding(int(seeds), devices))
    state, metrics, timing = _drive(module, config, keys, progress)
    summary = _summarize(metrics, timing, config, int(seeds))
    result = Result(algorithm, config, metrics, summary, path, state)
    if path is not None:
        write_results(result, seed_offset)
    return result


def _drive(module: ModuleType, config: Any, keys: jax.Array, progress: bool):
    num_periods, period = module.schedule(config)
    t0 = time.perf_counter()
    # Every leaf carries the seed axis first, so one sharding fits all inputs and outputs.
    sharding = keys.sharding
    init = jax.jit(jax.vmap(lambda k: module.init(k, config)), out_shardings=sharding)
    state = init(keys)
    chunk = jax.jit(
        jax.vmap(lambda s: run_periods(module.step, module.evaluate, s, 1, period)),
        in_shardings=sharding,
        out_shardings=sharding,
    )
    compiled = chunk.lower(state).compile()
    compile_seconds = time.perf_counter() - t0
    chunks: list[dict[str, Any]] = []
    bar = tqdm(
        total=config.total_steps,
        unit="step",
        unit_scale=True,
        disable=not progress,
        desc=f"{config.env_id} x{keys.shape[0]} seeds",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    t1 = time.perf_counter()
    for _ in range(num_periods):
        state, metrics = compiled(state)
        metrics = jax.tree.map(np.asarray, metrics)
        chunks.append(metrics)
        bar.update(config.eval_every)
        bar.set_postfix(eval_return=f"{metrics['eval_return'].mean():.1f}")
    jax.block_until_ready(state)
    bar.close()
    train_seconds = time.perf_counter() - t1
    stacked = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
    return state, stacked, {"compile_seconds": compile_seconds, "train_seconds": train_seconds}


def _summarize(metrics: dict[str, np.ndarray], timing: dict[str, float], config: Any, seeds: int):
    final = metrics["eval_return"][:, -1]
    total = seeds * config.total_steps
    return {
        "final_return_per_seed": final.tolist(),
        "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()),
        "seeds": seeds,
        "env_steps_per_seed": int(config.total_steps),
        "env_steps_per_second": total / max(timing["train_seconds"], 1e-9),
        **timing,
    }


def write_results(result: Result, seed_offset: int = 0) -> None:
    """Write ``config.json``, ``metrics.npz``, ``metrics.csv``, ``eval.csv``, ``summary.json``."""
    path = result.out
    assert path is not None
    info = {
        "algorithm": result.algorithm,
        "config": config_to_dict(result.config),
        "seeds": result.summary["seeds"],
        "seed_offset": seed_offset,
        "versions": {
            "purerl": _version(),
            "jax": jax.__version__,
            "equinox": eqx.__version__,
            "python": platform.python_version(),
        },
        "device": str(jax.devices()[0].device_kind),
        "num_devices": len(result.state.iteration.sharding.device_set),
        "platform": platform.platform(),
    }
    (path / "config.json").write_text(json.dumps(info, indent=2))
    np.savez_compressed(path / "metrics.npz", **result.metrics)
    eval_keys = [k for k in result.metrics if k.startswith("eval_")]
    iter_keys = [k for k in result.metrics if not k.startswith("eval_")]
    _write_csv(path / "metrics.csv", result.metrics, iter_keys, "iteration", seed_offset)
    _write_csv(path / "eval.csv", result.metrics, eval_keys, "evaluation", seed_offset)
    (path / "summary.json").write_text(json.dumps(result.summary, indent=2))


def _write_csv(
    file: Path, metrics: dict[str, np.ndarray], keys: list[str], index: str, seed_offset: int
) -> None:
    seeds, length = metrics[keys[0]].shape[:2]
    columns = np.stack([metrics[k].reshape(seeds, length).astype(np.float64) for k in keys], -1)
    with file.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", index, *keys])
        for s in range(seeds):
            for i in range(length):
                writer.writerow([seed_offset + s, i, *(f"{v:.6g}" for v in columns[s, i])])


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("purerl")
    except Exception:  # noqa: BLE001 (running from a source tree)
        return "unknown"
