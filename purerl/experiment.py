"""L4: run one algorithm over seeds × a hyperparameter grid × devices, with progress, results
on disk, checkpoints and resume.

``run(...)`` (and ``purerl train``) builds one batch axis of ``configs × seeds``: every sweep
point is a ``Config`` whose float leaves differ, stacked leaf by leaf, and every seed ``i`` uses
``PRNGKey(seed_offset + i)`` in every config (so configs are compared on the same seeds). The
batch is vmapped in **one compile** and sharded over devices. The algorithm's ``step`` is driven
in jit-compiled chunks of one evaluation period each — the computation is exactly the
algorithm's ``make_train`` loop cut into pieces — so that between chunks the host can update the
progress bar, feed logging sinks and write a checkpoint of the whole state. A run killed at any
moment resumes from its last checkpoint with ``resume=True`` (``purerl train --resume DIR``) and
finishes bit for bit as if it had never stopped (on the same machine and device count).

Results folder (``out``):

- ``config.json`` — algorithm, full resolved config, sweep grid and its points, seeds, versions,
  devices; written first, so ``--resume DIR`` needs nothing else;
- ``metrics.npz`` — every metric as ``[configs, seeds, iterations]`` (evaluation metrics
  ``[configs, seeds, evaluations]``);
- ``metrics.csv`` — tidy, one row per config × seed × iteration (swept values as columns);
- ``eval.csv`` — tidy, one row per config × seed × evaluation;
- ``summary.json`` — final greedy return per config: per seed, mean, median, IQM with a 95%
  stratified-bootstrap interval; timings and throughput;
- ``checkpoint.npz`` — the last checkpoint (whole training state + metrics so far).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import itertools
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from purerl import checkpoint, stats
from purerl.algorithms import core

__all__ = [
    "Result",
    "run",
    "resume",
    "make_config",
    "make_grid",
    "sweepable_fields",
    "config_to_dict",
    "seed_sharding",
    "load_run",
    "compare",
]

CHECKPOINT = "checkpoint.npz"
FORMAT = "purerl-run/1"


@dataclasses.dataclass
class Result:
    """What ``run`` returns.

    Attributes:
        algorithm: the algorithm's name.
        config: the base ``Config`` (sweep values not applied).
        points: one dict of swept values per config (``[{}]`` without a sweep).
        metrics: NumPy arrays ``[configs, seeds, iterations]`` (evaluation metrics
            ``[configs, seeds, evaluations]``).
        summary: final greedy return per config (per seed, mean, IQM + 95% CI), timings.
        out: the results folder, or ``None``.
        state: final training state; every leaf has a leading ``configs × seeds`` axis
            (``index = config * seeds + seed``; see ``state_of``).
    """

    algorithm: str
    config: Any
    points: list[dict[str, float]]
    metrics: dict[str, np.ndarray]
    summary: dict[str, Any]
    out: Path | None
    state: Any = None

    @property
    def seeds(self) -> int:
        """Number of seeds per config."""
        return int(self.summary["seeds"])

    def state_of(self, config: int = 0, seed: int = 0) -> Any:
        """The final training state of one run (config index, seed index)."""
        i = config * self.seeds + seed
        return jax.tree.map(lambda x: x[i], self.state)


# ---------------------------------------------------------------- configs and sweeps


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
    config: Any, sweep: dict[str, Sequence[float]] | None
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


# ---------------------------------------------------------------- devices


def _parse_devices(devices: Any) -> list[jax.Device] | None:
    if devices is None or isinstance(devices, list | tuple):
        return None if devices is None else list(devices)
    if devices == "all":
        return jax.devices()
    n = int(devices)
    available = jax.devices()
    if not 1 <= n <= len(available):
        raise ValueError(
            f"devices: asked for {n} but {len(available)} are available ({available[0].platform}); "
            "on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts "
            "(`purerl train --devices N` does it for you)"
        )
    return available[:n]


def seed_sharding(batch: int, devices: list[jax.Device] | None = None) -> NamedSharding:
    """Sharding of the ``configs × seeds`` axis over as many ``devices`` as divide it evenly.

    Default devices: all accelerators (every host's, after ``jax.distributed.initialize()``);
    on a CPU, one device. Sharding over several CPU host devices
    (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, then ``devices="all"``) runs each
    device's share on its own core — an opt-in, about 2× DQN throughput on 2 cores.
    """
    if devices is None:
        every = jax.devices()
        devices = every[:1] if every[0].platform == "cpu" else every
    devices = list(devices)
    n = math.gcd(int(batch), len(devices))
    return NamedSharding(Mesh(np.array(devices[:n]), ("batch",)), PartitionSpec("batch"))


def _seed_keys(seeds: int, seed_offset: int, configs: int, sharding: NamedSharding) -> jax.Array:
    # PRNGKey(i) built on the host: [configs × seeds, 2] with seed i's key in every config.
    # make_array_from_callback also builds arrays spanning several hosts.
    one = np.stack([np.asarray(jax.random.PRNGKey(seed_offset + i)) for i in range(seeds)])
    keys = np.tile(one, (configs, 1)).astype(np.uint32)
    return jax.make_array_from_callback(keys.shape, sharding, lambda idx: keys[idx])


def _to_host(tree: Any) -> Any:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


# ---------------------------------------------------------------- the run


def run(
    algorithm: str = "dqn",
    env: str | None = None,
    *,
    seeds: int = 1,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: dict[str, Sequence[float]] | None = None,
    config: Any = None,
    seed_offset: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 1,
    progress: bool = True,
    devices: Any = None,
    sinks: Sequence[Any] = (),
) -> Result:
    """Train ``seeds`` independent agents for every point of a hyperparameter ``sweep``.

    All ``configs × seeds`` runs are vmapped in one compile. Seed ``i`` uses
    ``jax.random.PRNGKey(seed_offset + i)`` in every config, so a run gives the same result
    alone or among others.

    Args:
        algorithm: a name in ``purerl.algorithms.ALGORITHMS`` (e.g. ``"dqn"``, ``"ppo"``).
        env: environment id (default: the config's).
        seeds: number of seeds per config.
        steps: total environment steps per run (default: the config's).
        overrides: config fields to change, e.g. ``{"learning_rate": 3e-4}``.
        sweep: a grid over float fields, e.g. ``{"learning_rate": [1e-3, 3e-4], "gamma":
            [0.99, 0.999]}`` (4 configs); ``sweepable_fields(config)`` lists the candidates.
        config: a ready ``Config`` (then ``env``/``steps``/``overrides`` must be unset).
        seed_offset: the first seed.
        out: results folder (see the module docstring); nothing is written when ``None``.
        overwrite: replace a non-empty ``out``.
        resume: continue the run in ``out`` from its last checkpoint; the requested run must be
            the one recorded in ``out/config.json``.
        checkpoint_every: write a checkpoint every this many chunks (evaluation periods) and at
            the end; 0 disables checkpoints.
        progress: show a progress bar on stderr.
        devices: devices to shard the batch axis over: ``None`` (all accelerators, or one CPU),
            ``"all"``, a number, or a list of devices. Results do not depend on it.
        sinks: logging sinks (``purerl.sinks``) fed between chunks.

    Example:
        >>> sweep = {"learning_rate": [1e-3, 3e-4]}
        >>> result = purerl.run("dqn", "CartPole-v1", seeds=4, sweep=sweep)
        >>> result.metrics["eval_return"].shape        # [2 configs, 4 seeds, 10 evaluations]
    """
    module = _algorithm(algorithm)
    if int(seeds) < 1:
        raise ValueError(f"seeds: must be >= 1, got {seeds}")
    if int(checkpoint_every) < 0:
        raise ValueError(f"checkpoint_every: must be >= 0, got {checkpoint_every}")
    if config is None:
        config = make_config(algorithm, env, steps, overrides)
    elif env is not None or steps is not None or overrides:
        raise ValueError("config: pass either a Config or env/steps/overrides, not both")
    points, configs = make_grid(config, sweep)
    for c in configs:
        core.check(module, c)  # every check, before any compile
    spec = _spec(algorithm, config, sweep, points, int(seeds), seed_offset)
    path = _prepare_out(out, overwrite, resume, spec)
    device_list = _parse_devices(devices)
    batch = len(configs) * int(seeds)
    sharding = seed_sharding(batch, device_list)
    keys = _seed_keys(int(seeds), seed_offset, len(configs), sharding)
    stacked = _stack_configs(configs, int(seeds))
    if path is not None and not (path / "config.json").exists() and jax.process_index() == 0:
        _write_json(path / "config.json", {**spec, **_environment(sharding)})
    for sink in sinks:
        sink.open({**spec, "out": None if path is None else str(path)})
    driver = _Driver(module, config, keys, stacked, sharding, path, checkpoint_every, sinks)
    state, metrics, timing = driver.drive(progress, points, int(seeds))
    summary = _summarize(metrics, timing, config, points, int(seeds))
    result = Result(algorithm, config, points, metrics, summary, path, state.agent)
    if path is not None and jax.process_index() == 0:
        write_results(result)
    for sink in sinks:
        sink.close()
    return result


def resume(
    out: str | Path,
    *,
    algorithm: str | None = None,
    env: str | None = None,
    steps: int | None = None,
    seeds: int | None = None,
    seed_offset: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: dict[str, Sequence[float]] | None = None,
    progress: bool = True,
    devices: Any = None,
    checkpoint_every: int = 1,
    sinks: Sequence[Any] = (),
) -> Result:
    """Continue the run recorded in ``out/config.json`` from its last checkpoint.

    The result is bit for bit the one an uninterrupted run would have given (same machine and
    device count). Arguments left ``None`` are taken from the folder; any that are given must
    agree with it (``ValueError`` listing the differences otherwise), so a resume never mixes
    two different runs. A finished run is left as it is and its results are rewritten.
    """
    path = Path(out)
    if not (path / "config.json").exists():
        raise ValueError(f"resume: {path} has no config.json — not a purerl run folder")
    spec = json.loads((path / "config.json").read_text())
    name = algorithm or spec["algorithm"]
    if name != spec["algorithm"]:
        raise ValueError(f"resume: {path} holds a {spec['algorithm']} run, not {name}")
    module = _algorithm(name)
    stored = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["config"].items()}
    config = _with_changes(module.Config(**stored), name, env, steps, overrides)
    return run(
        name,
        config=config,
        seeds=spec["seeds"] if seeds is None else seeds,
        seed_offset=spec["seed_offset"] if seed_offset is None else seed_offset,
        sweep=(spec["sweep"] or None) if sweep is None else sweep,
        out=path,
        resume=True,
        checkpoint_every=checkpoint_every,
        progress=progress,
        devices=devices,
        sinks=sinks,
    )


def _spec(algorithm, config, sweep, points, seeds, seed_offset) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "algorithm": algorithm,
        "config": config_to_dict(config),
        "sweep": {k: [float(v) for v in vs] for k, vs in (sweep or {}).items()},
        "points": points,
        "seeds": seeds,
        "seed_offset": seed_offset,
    }


_SPEC_KEYS = ("algorithm", "config", "sweep", "seeds", "seed_offset")


def _spec_differences(stored: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    diffs = []
    for key in _SPEC_KEYS:
        a, b = stored.get(key), json.loads(json.dumps(spec[key]))
        if key == "config" and isinstance(a, dict):
            diffs += [
                f"config.{k}: folder has {a.get(k)!r}, asked {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        elif a != b:
            diffs.append(f"{key}: folder has {a!r}, asked {b!r}")
    return diffs


def _prepare_out(out, overwrite: bool, resume: bool, spec: dict[str, Any]) -> Path | None:
    if out is None:
        if resume:
            raise ValueError("resume: needs the run folder (out=DIR / --resume DIR)")
        return None
    path = Path(out)
    if resume:
        if overwrite:
            raise ValueError("resume: cannot be combined with overwrite")
        config_file = path / "config.json"
        if not config_file.exists():
            raise ValueError(f"resume: {path} has no config.json — not a purerl run folder")
        diffs = _spec_differences(json.loads(config_file.read_text()), spec)
        if diffs:
            raise ValueError(
                f"resume: {path} holds a different run; refusing to mix them:\n  "
                + "\n  ".join(diffs)
            )
        return path
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ValueError(
                f"out: {path} already exists and is not empty; pass resume=True (--resume) to "
                "continue it or overwrite=True (--overwrite) to replace it"
            )
        if jax.process_index() == 0:
            shutil.rmtree(path)
    if jax.process_index() == 0:
        path.mkdir(parents=True, exist_ok=True)
    return path


class _Driver:
    """Runs the compiled chunk loop: progress, sinks, checkpoints, resume."""

    def __init__(self, module, config, keys, configs, sharding, path, checkpoint_every, sinks):
        self.module, self.config, self.sharding = module, config, sharding
        self.path, self.every, self.sinks = path, int(checkpoint_every), list(sinks)
        self.keys, self.configs = keys, configs
        self.num_periods, self.period = module.schedule(config)

    def _compile(self):
        module, sharding = self.module, self.sharding
        period = self.period

        def init_batch(keys, configs):
            return jax.vmap(lambda k, c: core.init(module, k, c))(keys, configs)

        def train_chunk(states):
            one = lambda s: core.run_periods(module, s, 1, period)  # noqa: E731
            return jax.vmap(one)(states)

        # Named functions: `jax_log_compiles` reports "jit(train_chunk)" — compiled once per run.
        init = jax.jit(init_batch, out_shardings=sharding)
        chunk = jax.jit(train_chunk, in_shardings=sharding, out_shardings=sharding)
        template = jax.eval_shape(init, self.keys, self.configs)
        return init, chunk.lower(template).compile(), template

    def _start(self, init, template):
        """Fresh state, or the last checkpoint's state and metrics."""
        file = None if self.path is None else self.path / CHECKPOINT
        if file is not None:
            for stale in self.path.glob(f".{CHECKPOINT}.*.tmp"):  # a write the kill cut short
                stale.unlink()
        if file is not None and file.exists():
            state, extra, meta = checkpoint.load(file, template, self.sharding)
            return state, ([extra] if extra else []), int(meta["chunks_done"])
        return init(self.keys, self.configs), [], 0

    def drive(self, progress: bool, points, seeds: int):
        self.shape = (len(points), seeds)
        t0 = time.perf_counter()
        init, compiled, template = self._compile()
        state, chunks, done = self._start(init, template)
        compile_seconds = time.perf_counter() - t0
        batch = self.keys.shape[0]
        steps_per_chunk = self.config.eval_every * batch
        bar = tqdm(
            total=self.num_periods * steps_per_chunk,
            initial=done * steps_per_chunk,
            unit="step",
            unit_scale=True,
            disable=not progress,
            desc=f"{self.config.env_id} ×{len(points)} configs ×{seeds} seeds",
            file=sys.stderr,
            dynamic_ncols=True,
        )
        saver = checkpoint.AsyncSaver()
        t1 = time.perf_counter()
        pending = None
        # Dispatch chunk i+1 before handling chunk i on the host (metrics, sinks, checkpoint):
        # the device always has queued work while the host writes.
        for i in range(done, self.num_periods):
            state, metrics = compiled(state)
            if pending is not None:
                self._handle(*pending, chunks, bar, saver)
            pending = (i, state, metrics)
        if pending is not None:
            self._handle(*pending, chunks, bar, saver)
        jax.block_until_ready(state)
        saver.wait()
        bar.close()
        train_seconds = time.perf_counter() - t1
        stacked = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
        timing = {
            "compile_seconds": compile_seconds,
            "train_seconds": train_seconds,
            "resumed_at_chunk": done,
            "chunks": self.num_periods,
        }
        return state, stacked, timing

    def _handle(self, i, state, metrics, chunks, bar, saver) -> None:
        # [configs × seeds, T] -> [configs, seeds, T]
        metrics = {k: v.reshape(self.shape + v.shape[1:]) for k, v in _to_host(metrics).items()}
        chunks.append(metrics)
        bar.update(self.config.eval_every * self.keys.shape[0])
        bar.set_postfix(eval_return=f"{float(np.mean(metrics['eval_return'][..., -1])):.1f}")
        for sink in self.sinks:
            sink.write(i, metrics)
        last = i + 1 == self.num_periods
        if self.path is not None and self.every > 0 and ((i + 1) % self.every == 0 or last):
            so_far = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
            saver.submit(self.path / CHECKPOINT, state, so_far, {"chunks_done": i + 1})


# ---------------------------------------------------------------- results on disk


def _environment(sharding: NamedSharding) -> dict[str, Any]:
    device = jax.devices()[0]
    return {
        "versions": {
            "purerl": _version(),
            "jax": jax.__version__,
            "equinox": eqx.__version__,
            "python": platform.python_version(),
        },
        "device": f"{device.platform}: {device.device_kind}",
        "num_devices": len(sharding.device_set),
        "num_processes": jax.process_count(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }


def _summarize(metrics, timing, config, points, seeds: int) -> dict[str, Any]:
    final = metrics["eval_return"][:, :, -1]  # [configs, seeds]
    per_config = [
        {"point": p, "final_return_per_seed": final[c].tolist(), **stats.summarize(final[c])}
        for c, p in enumerate(points)
    ]
    total = final.size * config.total_steps
    resumed = timing["resumed_at_chunk"] / max(timing["chunks"], 1)
    summary: dict[str, Any] = {
        "seeds": seeds,
        "configs": len(points),
        "env_steps_per_seed": int(config.total_steps),
        # throughput of the part of the run this process trained
        "env_steps_per_second": total * (1 - resumed) / max(timing["train_seconds"], 1e-9),
        **timing,
        "per_config": per_config,
    }
    if len(points) == 1:
        summary["final_return_per_seed"] = per_config[0]["final_return_per_seed"]
        summary["final_return_mean"] = per_config[0]["mean"]
        summary["final_return_std"] = per_config[0]["std"]
    return summary


def _write_json(file: Path, data: dict[str, Any]) -> None:
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, file)


def write_results(result: Result) -> None:
    """Write ``metrics.npz``, ``metrics.csv``, ``eval.csv`` and ``summary.json`` to
    ``result.out`` (``config.json`` is written when the run starts)."""
    path = result.out
    assert path is not None
    np.savez_compressed(path / "metrics.npz", **result.metrics)
    eval_keys = [k for k in result.metrics if k.startswith("eval_")]
    iter_keys = [k for k in result.metrics if not k.startswith("eval_")]
    offset = json.loads((path / "config.json").read_text())["seed_offset"]
    _write_csv(path / "metrics.csv", result, iter_keys, "iteration", offset)
    _write_csv(path / "eval.csv", result, eval_keys, "evaluation", offset)
    _write_json(path / "summary.json", result.summary)


def _write_csv(file: Path, result: Result, keys: list[str], index: str, offset: int) -> None:
    """Tidy table: one row per config × seed × ``index`` (iteration or evaluation)."""
    configs, seeds, length = result.metrics[keys[0]].shape[:3]
    names = list(result.points[0])
    columns = [result.metrics[k].reshape(configs, seeds, length).astype(np.float64) for k in keys]
    with file.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", *names, "seed", index, *keys])
        for c in range(configs):
            point = [f"{result.points[c][n]:.6g}" for n in names]
            block = np.stack([col[c] for col in columns], -1)  # [seeds, length, keys]
            for s in range(seeds):
                prefix = [c, *point, offset + s]
                writer.writerows(
                    [*prefix, i, *(f"{v:.6g}" for v in row)] for i, row in enumerate(block[s])
                )


def load_run(path: str | Path) -> dict[str, Any]:
    """Read a results folder: ``{"config": ..., "metrics": {name: [configs, seeds, T]},
    "summary": ..., "path": Path}`` (``summary`` is ``None`` for an unfinished run)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise ValueError(f"run: {path} is not a purerl results folder (no config.json)")
    if not (path / "metrics.npz").exists():
        raise ValueError(f"run: {path} has not finished (no metrics.npz); resume it first")
    with np.load(path / "metrics.npz") as data:
        metrics = {k: data[k] for k in data.files}
    summary_file = path / "summary.json"
    return {
        "config": json.loads((path / "config.json").read_text()),
        "metrics": metrics,
        "summary": json.loads(summary_file.read_text()) if summary_file.exists() else None,
        "path": path,
    }


def compare(runs: Sequence[str | Path], metric: str = "eval_return") -> list[dict[str, Any]]:
    """One row per run folder × sweep point: the final ``metric`` over seeds (IQM with a 95%
    stratified-bootstrap CI, mean, std, median) and the probability of improvement over the
    first row, ``P(X > first)`` with its bootstrap CI (Agarwal et al., 2021)."""
    rows = []
    for run in map(load_run, runs):
        if metric not in run["metrics"]:
            raise ValueError(f"metric: {metric!r} not recorded in {run['path']}")
        final = run["metrics"][metric][..., -1]
        for c, point in enumerate(run["config"]["points"]):
            rows.append(
                {
                    "run": str(run["path"]),
                    "algorithm": run["config"]["algorithm"],
                    "env": run["config"]["config"]["env_id"],
                    "point": point,
                    "scores": final[c],
                    **stats.summarize(final[c]),
                }
            )
    for row in rows:
        row["p_improve"] = stats.probability_of_improvement(row["scores"], rows[0]["scores"])
        low, high = stats.probability_of_improvement_ci(row["scores"], rows[0]["scores"])
        row["p_improve_ci_low"], row["p_improve_ci_high"] = low, high
    return rows


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("purerl")
    except Exception:  # noqa: BLE001 (running from a source tree)
        return "unknown"
