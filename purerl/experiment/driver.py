"""L4 driver: ``run`` / ``resume`` — devices and sharding, seed keys, the jit-compiled chunk
loop with progress bar, sinks and checkpoints (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import math
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

from purerl import checkpoint
from purerl.algorithms import core
from purerl.experiment.results import (
    CHECKPOINT,
    FORMAT,
    Result,
    _environment,
    _summarize,
    _write_json,
    write_results,
)
from purerl.experiment.sweeps import (
    _algorithm,
    _stack_configs,
    _with_changes,
    config_to_dict,
    make_config,
    make_grid,
)

__all__ = ["RunSettings", "resume", "run", "seed_sharding"]


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


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a run is carried out: everything that is not the algorithm's ``Config``.

    Attributes:
        seeds: seeds per config; seed ``i`` is ``PRNGKey(seed_offset + i)`` in every config.
        seed_offset: the first seed.
        sweep: grid over float config fields, ``{field: [values]}`` (``None``: no sweep).
        out: results folder (``None``: nothing is written).
        overwrite: replace a non-empty ``out``.
        resume: continue the run recorded in ``out`` from its last checkpoint.
        checkpoint_every: a checkpoint every this many chunks and at the end (0: none).
        progress: show a progress bar on stderr.
        devices: devices for the batch axis: ``None``, ``"all"``, a number or a list.
        sinks: logging sinks fed between chunks.
        network: the user's network (module or factory), or ``None`` for the default.
    """

    seeds: int = 1
    seed_offset: int = 0
    sweep: dict[str, Sequence[Any]] | None = None
    out: str | Path | None = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int = 1
    progress: bool = True
    devices: Any = None
    sinks: Sequence[Any] = ()
    network: Any = None


def run(
    algorithm: str | core.Algorithm = "dqn",
    env: str | None = None,
    *,
    seeds: int = 1,
    steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: dict[str, Sequence[Any]] | None = None,
    config: Any = None,
    seed_offset: int = 0,
    out: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 1,
    progress: bool = True,
    devices: Any = None,
    sinks: Sequence[Any] = (),
    network: Any = None,
) -> Result:
    """Train ``seeds`` independent agents for every point of a hyperparameter ``sweep``.

    All ``configs × seeds`` runs are vmapped in one compile. Seed ``i`` uses
    ``jax.random.PRNGKey(seed_offset + i)`` in every config, so a run gives the same result
    alone or among others.

    Args:
        algorithm: a registered name (``core.registered()``, e.g. ``"dqn"``) or a
            ``core.Algorithm`` record.
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
        network: your own network instead of the algorithm's default: an Equinox module or a
            factory ``(key, obs_shape, action_spec) -> module`` (``core.build_network``).

    Example:
        >>> sweep = {"learning_rate": [1e-3, 3e-4]}
        >>> result = purerl.run("dqn", "CartPole-v1", seeds=4, sweep=sweep)
        >>> result.metrics["eval_return"].shape        # [2 configs, 4 seeds, 10 evaluations]
    """
    module = _algorithm(algorithm)
    if config is None:
        config = make_config(module.name, env, steps, overrides)
    elif env is not None or steps is not None or overrides:
        raise ValueError("config: pass either a Config or env/steps/overrides, not both")
    settings = RunSettings(
        seeds=seeds,
        seed_offset=seed_offset,
        sweep=sweep,
        out=out,
        overwrite=overwrite,
        resume=resume,
        checkpoint_every=checkpoint_every,
        progress=progress,
        devices=devices,
        sinks=tuple(sinks),
        network=network,
    )
    return execute(module, config, settings)


def execute(module: core.Algorithm, config: Any, settings: RunSettings) -> Result:
    """Run ``config`` of ``module`` as ``settings`` say (what ``run`` and ``resume`` call)."""
    seeds = int(settings.seeds)
    if seeds < 1:
        raise ValueError(f"seeds: must be >= 1, got {settings.seeds}")
    if int(settings.checkpoint_every) < 0:
        raise ValueError(f"checkpoint_every: must be >= 0, got {settings.checkpoint_every}")
    config = _fit_budget(module, config)
    points, configs = make_grid(config, settings.sweep)
    for c in configs:
        core.check(module, c)  # every check, before any compile
    spec = _spec(module.name, config, settings, points)
    path = _prepare_out(settings.out, settings.overwrite, settings.resume, spec)
    batch = len(configs) * seeds
    sharding = seed_sharding(batch, _parse_devices(settings.devices))
    keys = _seed_keys(seeds, settings.seed_offset, len(configs), sharding)
    stacked = _stack_configs(configs, seeds)
    if path is not None and not (path / "config.json").exists() and jax.process_index() == 0:
        _write_json(path / "config.json", {**spec, **_environment(sharding)})
    for sink in settings.sinks:
        sink.open({**spec, "out": None if path is None else str(path)})
    driver = _Driver(module, config, keys, stacked, sharding, path, settings)
    state, metrics, timing = driver.drive(settings.progress, points, seeds)
    summary = _summarize(metrics, timing, config, points, seeds)
    result = Result(module.name, config, points, metrics, summary, path, state.agent)
    if path is not None and jax.process_index() == 0:
        write_results(result)
    for sink in settings.sinks:
        sink.close()
    return result


def _fit_budget(module: core.Algorithm, config: Any) -> Any:
    """Any positive budget runs: round it to whole iterations and say so in one line."""
    if not isinstance(config, module.Config):
        return config  # core.check names the problem
    fitted = core.fit_budget(module, config)
    if fitted is not config:
        periods = fitted.total_steps // fitted.eval_every
        print(
            f"purerl: {module.name} runs whole iterations of {module.iteration_steps(config):,} "
            f"env steps: {fitted.total_steps:,} env steps, evaluated every "
            f"{fitted.eval_every:,} ({periods} evaluation{'s' * (periods != 1)}), for total_steps="
            f"{config.total_steps:,}, eval_every={config.eval_every:,}",
            file=sys.stderr,
        )
    return fitted


def resume(
    out: str | Path,
    *,
    algorithm: str | None = None,
    env: str | None = None,
    steps: int | None = None,
    seeds: int | None = None,
    seed_offset: int | None = None,
    overrides: dict[str, Any] | None = None,
    sweep: dict[str, Sequence[Any]] | None = None,
    progress: bool = True,
    devices: Any = None,
    checkpoint_every: int = 1,
    sinks: Sequence[Any] = (),
    network: Any = None,
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
    if spec.get("network") is not None and network is None:
        raise ValueError(
            f"network: {path} was trained with a custom network ({spec['network']}); pass the "
            "same network= to resume it"
        )
    settings = RunSettings(
        seeds=spec["seeds"] if seeds is None else seeds,
        seed_offset=spec["seed_offset"] if seed_offset is None else seed_offset,
        sweep=(spec["sweep"] or None) if sweep is None else sweep,
        out=path,
        resume=True,
        checkpoint_every=checkpoint_every,
        progress=progress,
        devices=devices,
        sinks=tuple(sinks),
        network=network,
    )
    return execute(module, config, settings)


def _network_name(network: Any) -> str | None:
    """How a custom network is recorded in ``config.json`` (its class or factory name)."""
    if network is None:
        return None
    kind = network if callable(network) and not isinstance(network, eqx.Module) else type(network)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def _spec(algorithm: str, config: Any, settings: RunSettings, points) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "algorithm": algorithm,
        "config": config_to_dict(config),
        "sweep": {k: [float(v) for v in vs] for k, vs in (settings.sweep or {}).items()},
        "points": points,
        "seeds": int(settings.seeds),
        "seed_offset": settings.seed_offset,
        "network": _network_name(settings.network),
    }


_SPEC_KEYS = ("algorithm", "config", "sweep", "seeds", "seed_offset", "network")


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

    def __init__(self, module, config, keys, configs, sharding, path, settings: RunSettings):
        self.module, self.config, self.sharding = module, config, sharding
        self.path, self.every = path, int(settings.checkpoint_every)
        self.sinks, self.network = list(settings.sinks), settings.network
        self.keys, self.configs = keys, configs
        self.num_periods, self.period = core.schedule(module, config)

    def _compile(self):
        module, sharding, network = self.module, self.sharding, self.network
        period = self.period

        def init_batch(keys, configs):
            return jax.vmap(lambda k, c: core.init(module, k, c, network))(keys, configs)

        def train_chunk(states):
            def one(s):
                return core.run_periods(module, s, 1, period)

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
