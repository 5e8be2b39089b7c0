"""L4 driver: ``run`` / ``resume`` — devices and sharding, seed keys, the jit-compiled chunk
loop with progress bar, sinks and checkpoints (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
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
from purerl.algorithms.common import INT32_MAX
from purerl.envs.host import is_host_id
from purerl.experiment.actor_learner import ActorLearner, HostSettings, check_host_run
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
    _base_config,
    _changed,
    _Errors,
    _grid,
    _stack_configs,
    _with_changes,
    config_to_dict,
)

__all__ = [
    "RunSettings",
    "resume",
    "run",
    "seed_sharding",
    "compile_cache_dir",
    "enable_compile_cache",
]


def _parse_devices(devices: Any) -> list[jax.Device] | None:
    if devices is None or isinstance(devices, list | tuple):
        listed = devices is None or (devices and all(isinstance(d, jax.Device) for d in devices))
        if not listed:
            raise ValueError(f"devices: expected a non-empty list of jax devices, got {devices!r}")
        return None if devices is None else list(devices)
    if devices == "all":
        return jax.devices()
    n = int(devices) if isinstance(devices, str) and devices.strip().isdigit() else devices
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"devices: expected None, 'all', a number or a list, got {devices!r}")
    available = jax.devices()
    if not 1 <= n <= len(available):
        raise ValueError(
            f"devices: asked for {n} but {len(available)} are available ({available[0].platform}); "
            "on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts "
            "(`purerl train --devices N` does it for you)"
        )
    return available[:n]


def seed_sharding(batch: int, devices: list[jax.Device] | None = None) -> NamedSharding:
    """Sharding of the ``configs × seeds`` axis over the most ``devices`` that divide it evenly.

    Default devices: every device JAX shows — all accelerators (every host's, after
    ``jax.distributed.initialize()``), or every CPU host device. JAX shows one CPU device
    unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set before it starts
    (``purerl train`` sets it, one per core); each host device runs its share on its own core,
    about 2× DQN throughput on 2 cores.
    """
    devices = jax.devices() if devices is None else list(devices)
    n = _most_dividing(int(batch), len(devices))
    return NamedSharding(Mesh(np.array(devices[:n]), ("batch",)), PartitionSpec("batch"))


def _most_dividing(batch: int, available: int) -> int:
    """The largest device count ``<= available`` that divides ``batch`` (8 runs, 6 devices: 4)."""
    return max(n for n in range(1, max(available, 1) + 1) if batch % n == 0)


def _seed_keys(seeds: int, seed_offset: int, configs: int, sharding: NamedSharding) -> jax.Array:
    # PRNGKey(i) built on the host: [configs × seeds, 2] with seed i's key in every config.
    # make_array_from_callback also builds arrays spanning several hosts. One vmapped call, the
    # same keys as a call per seed (seeds are < 2**32), not a host loop (~0.1 ms a key).
    seed = np.arange(seed_offset, seed_offset + seeds, dtype=np.uint32)
    one = np.asarray(jax.vmap(jax.random.PRNGKey)(seed))
    keys = np.tile(one, (configs, 1)).astype(np.uint32)
    return jax.make_array_from_callback(keys.shape, sharding, lambda idx: keys[idx])


def _to_host(tree: Any) -> Any:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _barrier(name: str) -> None:
    """With several processes (``jax.distributed``), wait until every process gets here."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"purerl: {name}")


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
        checkpoint_every: ``None``: time-based checkpoints (``checkpoint_seconds``); a number
            K: a checkpoint every K chunks instead; 0: none. Always one at the end (unless 0).
        checkpoint_seconds: with ``checkpoint_every=None``, a checkpoint once this many seconds
            of training passed since the last one (checked after each chunk).
        progress: show a progress bar on stderr.
        devices: devices for the batch axis: ``None`` (every device; on a resume, as many as
            the run used), ``"all"``, a number or a list.
        sinks: logging sinks fed between chunks (on process 0 only, with several).
        network: the user's network (module or factory), or ``None`` for the default.
        compile_cache: keep compiled programs on disk (``enable_compile_cache``), so a
            repeated run of the same config skips XLA's compilation.
        host: how the actor–learner loop runs a host environment (``gymnasium:...``,
            ``atari:...``): actors, subprocess envs, staleness (``HostSettings``); unused for
            JAX environments.
    """

    seeds: int = 1
    seed_offset: int = 0
    sweep: dict[str, Sequence[Any]] | None = None
    out: str | Path | None = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int | None = None
    checkpoint_seconds: float = 60.0
    progress: bool = True
    devices: Any = None
    sinks: Sequence[Any] = ()
    network: Any = None
    compile_cache: bool = True
    host: HostSettings = HostSettings()


COMPILE_CACHE_ENV = "PURERL_COMPILE_CACHE"


def compile_cache_dir() -> Path | None:
    """Where ``purerl.run`` / ``purerl train`` keep compiled programs: ``$PURERL_COMPILE_CACHE``
    if it names a folder, none if it is ``0`` / ``off`` / ``false`` / ``no``, else
    ``$XDG_CACHE_HOME/purerl/jax`` (``~/.cache/purerl/jax``)."""
    value = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if value.lower() in ("0", "off", "false", "no"):
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "purerl" / "jax"


def enable_compile_cache(enabled: bool = True) -> Path | None:
    """Turn on JAX's persistent compilation cache (``compile_cache_dir()``) unless it is on
    already (``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir`` set by you: that
    folder is kept). Programs that took at least a second to compile are stored, keyed by the
    program, the JAX version and the device, so a repeated run of the same config loads them
    instead of compiling. Returns the folder in use, or ``None`` when disabled
    (``enabled=False``, ``--no-compile-cache`` or ``PURERL_COMPILE_CACHE=0``)."""
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = compile_cache_dir() if enabled else None
    if path is not None:
        jax.config.update("jax_compilation_cache_dir", str(path))
    return path


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
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    progress: bool = True,
    devices: Any = None,
    sinks: Sequence[Any] = (),
    network: Any = None,
    compile_cache: bool = True,
    actors: int = 1,
    async_envs: bool = False,
    max_staleness: int = 1,
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
        checkpoint_every: ``None`` (default): checkpoints by time, at most one every
            ``checkpoint_seconds`` of training; a number K: one every K chunks (evaluation
            periods) instead. Either way one at the end; 0 disables checkpoints.
        checkpoint_seconds: the least training time between two time-based checkpoints
            (``inf``: only the final one). Ignored when ``checkpoint_every`` is a number.
        progress: show a progress bar on stderr.
        devices: devices to shard the batch axis over: ``None`` (every device JAX shows: all
            accelerators, or every CPU host device), ``"all"``, a number, or a list of devices;
            the batch goes over the most of them that divide it. On a CPU, JAX shows one
            device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set before
            JAX is imported (``purerl train`` sets it to the number of cores). The count is
            recorded (``num_devices`` in ``config.json`` and ``summary.json``): results are
            reproducible bit for bit on the same machine *and* device count; another count
            changes the last float bit of some gradients (XLA compiles the sharded program a
            little differently), which long chaotic runs amplify.
        sinks: logging sinks (``purerl.sinks``) fed between chunks (with several
            processes, on process 0 only: it alone writes).
        network: your own network instead of the algorithm's default: an Equinox module or a
            factory ``(key, obs_shape, action_spec) -> module`` (``core.build_network``).
        compile_cache: keep compiled programs on disk and reuse them (``enable_compile_cache``:
            ``~/.cache/purerl/jax``; ``PURERL_COMPILE_CACHE`` names another folder, or ``0``
            turns it off), so running the same config again skips compilation.
        actors: host environments only (``gymnasium:ID``, ``atari:GAME``, trained through
            the actor–learner loop, ``purerl.experiment.actor_learner``): actor threads, each
            stepping ``num_envs / actors`` envs of every run.
        async_envs: host environments only: every env copy in its own subprocess.
        max_staleness: host environments only: how many learner updates the parameters a
            rollout was collected with may lag behind (0: synchronous, exactly on-policy).

    Returns:
        A ``Result``. ``result.summary["diverged"]`` lists the runs whose loss or parameters
        went non-finite (config, swept values, seed, env step): they were frozen at their last
        finite state while the others trained on (``core.run_periods``).

    Raises:
        ValueError: before anything compiles or is written, listing every bad input at once,
            one line each starting with its field (an unknown env id first, with close ids):
            unknown or ill-typed fields, values the config refuses (NaN and ±inf included),
            bad seeds / seed_offset / checkpoint_every / devices / sweep, a run too large for
            the memory here.

    Example:
        >>> sweep = {"learning_rate": [1e-3, 3e-4]}
        >>> result = purerl.run("dqn", "CartPole-v1", seeds=4, sweep=sweep)
        >>> result.metrics["eval_return"].shape        # [2 configs, 4 seeds, 10 evaluations]
    """
    module = _algorithm(algorithm)
    errors = _Errors()  # every bad input is reported at once, in execute
    if config is None:
        base = _base_config(module, env, overrides)
        config = _changed(base, module.name, errors, env, steps, overrides)
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
        checkpoint_seconds=checkpoint_seconds,
        progress=progress,
        devices=devices,
        sinks=tuple(sinks),
        network=network,
        compile_cache=compile_cache,
        host=HostSettings(actors=actors, async_envs=async_envs, max_staleness=max_staleness),
    )
    return execute(module, config, settings, errors)


def execute(
    module: core.Algorithm, config: Any, settings: RunSettings, errors: _Errors | None = None
) -> Result:
    """Run ``config`` of ``module`` as ``settings`` say (what ``run`` and ``resume`` call).

    Every check runs first, before anything compiles or is written: one ``ValueError`` lists
    every problem (with those already in ``errors``), one line each, starting with its field.
    """
    seeds, devices, config, points, configs = _checked(module, config, settings, errors)
    enable_compile_cache(settings.compile_cache)
    spec = _spec(module.name, config, settings, points)
    on_host = is_host_id(config.env_id)
    if on_host:  # one learner device: the envs are the host's, the batch stays whole
        devices = jax.local_devices()[:1]
    sharding = seed_sharding(len(configs) * seeds, devices)
    used = len(sharding.device_set)
    path = _prepare_out(settings.out, settings.overwrite, settings.resume, spec, used)
    if settings.resume and path is not None:
        _check_checkpoint(path, (len(points), seeds), module, config)
    keys = _seed_keys(seeds, settings.seed_offset, len(configs), sharding)
    stacked = _stack_configs(configs, seeds)
    if path is not None and not (path / "config.json").exists() and jax.process_index() == 0:
        _write_json(path / "config.json", {**spec, **_environment(sharding)})
    sinks = _writers(settings.sinks)
    for sink in sinks:
        sink.open({**spec, "out": None if path is None else str(path)})
    driver = (_HostDriver if on_host else _Driver)(
        module, config, keys, stacked, sharding, path, settings
    )
    try:
        state, metrics, timing = driver.drive(settings.progress, points, seeds)
    except BaseException as error:
        if on_host:  # a compiled run's interruption keeps its periodic checkpoints only
            _write_partial(driver, module, config, points, seeds, settings, path, error)
        for sink in sinks:
            sink.close()
        raise
    diverged_at = np.asarray(_to_host(state.diverged_at)).reshape(len(points), seeds)
    summary = _summarize(
        metrics, timing, config, points, seeds, diverged_at, int(settings.seed_offset)
    )
    summary["num_devices"] = used
    if on_host:
        summary["host"] = timing.pop("host")
    result = Result(module.name, config, points, metrics, summary, path, state.agent)
    if path is not None and jax.process_index() == 0:
        write_results(result)
    for sink in sinks:
        sink.close()
    # every process returns once process 0's files are on disk: a process that ended early
    # would wait for the others in JAX's shutdown barrier, and past its timeout
    # (`shutdown_timeout_seconds`) the distributed runtime aborts them all, mid-write included
    _barrier("results written")
    return result


def _write_partial(driver, module, config, points, seeds, settings, path, error) -> None:
    """After an interrupted run (Ctrl-C, a failed actor): the results of the periods that
    finished, with ``summary["interrupted"]`` naming the cause, and a checkpoint of the last
    one, so ``resume`` continues from there (nothing when none finished or nothing is
    written)."""
    chunks, state = driver.chunks, driver.last_state
    if path is None or not chunks or state is None or jax.process_index() != 0:
        return
    metrics = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
    done = len(chunks)
    partial = dataclasses.replace(config, total_steps=done * config.eval_every)
    timing = {**driver.timing(), "chunks": driver.num_periods}
    timing.pop("host", None)
    diverged_at = np.asarray(_to_host(state.diverged_at)).reshape(len(points), seeds)
    summary = _summarize(
        metrics, timing, partial, points, seeds, diverged_at, int(settings.seed_offset)
    )
    summary["interrupted"] = f"{type(error).__name__}: {error}".strip().split("\n")[0]
    summary["chunks_done"] = done
    result = Result(module.name, config, points, metrics, summary, path, state.agent)
    write_results(result)
    if settings.checkpoint_every != 0:  # so that --resume continues from the last period
        checkpoint.save(path / CHECKPOINT, state, metrics, {"chunks_done": done})


def _writers(sinks: Sequence[Any]) -> list[Any]:
    """The sinks this process feeds: all of them on process 0, none on the others (every
    process holds the gathered metrics; only process 0 writes, sinks included)."""
    return list(sinks) if jax.process_index() == 0 else []


def _whole_number(name: str, value: Any, low: int, high: int = INT32_MAX) -> int:
    """``value`` as an ``int`` in ``[low, high]``, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if not low <= value <= high:
        bound = f">= {low}, got {value}" if value < low else f"<= {high:,}, got {value:,}"
        raise ValueError(f"{name}: must be {bound}")
    return int(value)


def _seconds(name: str, value: Any) -> float:
    """``value`` as a number of seconds ``>= 0`` (``inf`` allowed), or ``ValueError``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name}: expected a number of seconds, got {value!r}")
    if not float(value) >= 0:  # NaN fails too
        raise ValueError(f"{name}: must be >= 0 seconds, got {value!r}")
    return float(value)


def _check_settings(settings: RunSettings, errors: _Errors) -> tuple[int, Any]:
    """``(seeds, devices)`` of ``settings``; each bad setting goes to ``errors``."""
    seeds = errors.attempt(_whole_number, "seeds", settings.seeds, 1)
    # PRNGKey(i) takes 32-bit seeds: a larger one would repeat a smaller one's stream
    last = 2**32 - (seeds or 1)
    errors.attempt(_whole_number, "seed_offset", settings.seed_offset, 0, last)
    if settings.checkpoint_every is not None:
        errors.attempt(_whole_number, "checkpoint_every", settings.checkpoint_every, 0)
    errors.attempt(_seconds, "checkpoint_seconds", settings.checkpoint_seconds)
    devices = errors.attempt(_parse_devices, settings.devices)
    return seeds or 1, devices


def _memory_limit(devices: list[jax.Device] | None) -> int | None:
    """Bytes of memory the runs can hold: the devices' (a CPU's: the machine's RAM)."""
    devices = devices or jax.devices()
    if devices[0].platform == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return None
    limit = (devices[0].memory_stats() or {}).get("bytes_limit")
    return None if limit is None else int(limit) * len(devices)


def _gib(n: int | float) -> str:
    """``n`` bytes, readable."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def _check_memory(module: core.Algorithm, config: Any, batch: int, network: Any, devices) -> None:
    """``ValueError`` when the training states and evaluation envs alone (shapes traced, nothing
    compiled) cannot fit in memory: a huge size or seed count fails here, not as an allocation
    error later. (What a step makes and drops, e.g. a rollout, is not counted.)"""
    limit = _memory_limit(devices)
    if limit is None:
        return
    evaluation = module.make_env(config, config.eval_envs)

    def one_run(key):
        return core.init(module, key, config, network), evaluation.reset(key)

    shapes = jax.eval_shape(one_run, jax.random.PRNGKey(0))
    one = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    if one > limit:
        default = module.Config()
        grown = [
            f"{f.name}={getattr(config, f.name)}"
            for f in dataclasses.fields(config)
            if isinstance(getattr(config, f.name), int | tuple)
            and getattr(config, f.name) != getattr(default, f.name)
        ]
        raise ValueError(
            f"config: one run's training state takes {_gib(one)}, more than the {_gib(limit)} "
            f"of memory here; shrink its sizes ({', '.join(grown) or 'buffer_size, num_envs'})"
        )
    if one * batch > limit:
        raise ValueError(
            f"seeds: {batch:,} runs (seeds × sweep points) of {_gib(one)} each take "
            f"{_gib(one * batch)}, more than the {_gib(limit)} of memory here; run fewer at once"
        )


def _checked(module: core.Algorithm, config: Any, settings: RunSettings, errors: _Errors | None):
    """``(seeds, devices, config, points, configs)`` once every check passed (the config's,
    the settings', the sweep's, the environment's, the memory's), before any compile."""
    errors = _Errors() if errors is None else errors
    seeds, devices = _check_settings(settings, errors)
    if not isinstance(config, module.Config):
        errors.attempt(core.check, module, config)  # names the type
        errors.raise_any()
    try:
        fitted = core.fit_budget(module, config)
    except ValueError as error:  # rounded up past what the config allows
        size = module.iteration_steps(config)
        errors.add(f"{error} (total_steps rounded up to whole iterations of {size:,} env steps)")
        errors.raise_any()
    points, configs = _grid(fitted, settings.sweep, errors)
    for c in configs:
        if errors.env_unknown:  # the env checks would repeat it
            errors.attempt(core.schedule, module, c)
        else:
            errors.attempt(core.check, module, c)
    if not errors.env_unknown and is_host_id(fitted.env_id):
        for problem in check_host_run(module, fitted, settings.host):
            errors.add(problem)
        if jax.process_count() > 1:
            errors.add(f"env: {fitted.env_id} is a host environment: train it in one process")
    errors.raise_any()
    _check_memory(module, fitted, len(configs) * seeds, settings.network, devices)
    _say_env_defaults(module, config)
    _say_fitted(module, config, fitted)
    return seeds, devices, fitted, points, configs


def _say_env_defaults(module: core.Algorithm, config: Any) -> None:
    """A run on an env with its own defaults (``Algorithm.env_defaults``) says which of them it
    uses, in one line, so that a CartPole-tuned ``Config()`` is not mistaken for the run's."""
    defaults = module.env_defaults.get(config.env_id, {})
    used = [f"{k}={v!r}" for k, v in defaults.items() if _same(getattr(config, k), v)]
    if used:
        print(
            f"purerl: {module.name} on {config.env_id} uses its settings for that env "
            f"(override any field to change it): {', '.join(used)}",
            file=sys.stderr,
        )


def _same(value: Any, default: Any) -> bool:
    """Whether a config value (a Python number, or a 0-d array after a sweep) is ``default``."""
    try:
        return bool(np.all(np.asarray(value) == np.asarray(default)))
    except (TypeError, ValueError):
        return False


def _say_fitted(module: core.Algorithm, config: Any, fitted: Any) -> None:
    """Any positive budget runs: it was rounded to whole iterations; say so in one line."""
    if fitted is not config:
        periods = fitted.total_steps // fitted.eval_every
        print(
            f"purerl: {module.name} runs whole iterations of {module.iteration_steps(config):,} "
            f"env steps: {fitted.total_steps:,} env steps, evaluated every "
            f"{fitted.eval_every:,} ({periods} evaluation{'s' * (periods != 1)}), for total_steps="
            f"{config.total_steps:,}, eval_every={config.eval_every:,}",
            file=sys.stderr,
        )


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
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 60.0,
    sinks: Sequence[Any] = (),
    network: Any = None,
    compile_cache: bool = True,
    actors: int = 1,
    async_envs: bool = False,
    max_staleness: int = 1,
) -> Result:
    """Continue the run recorded in ``out/config.json`` from its last checkpoint.

    The result is bit for bit the one an uninterrupted run would have given (same machine and
    device count), except on a host environment (``gymnasium:...``), whose episodes cannot
    be snapshotted: the learner continues from the checkpoint and the episodes start anew
    (``actors``, ``async_envs``, ``max_staleness``: see ``run``). Arguments left ``None`` are
    taken from the folder (``devices``: as many as the run used); any that are given must
    agree with it (``ValueError`` listing the
    differences otherwise; ``devices`` that shard the runs over another number of devices
    are refused too), so a resume never mixes two different runs. A finished run is left as
    it is and its results are rewritten.

    A damaged folder (``config.json`` that is not a run record, a truncated or corrupted
    ``checkpoint.npz``) raises a ``ValueError`` naming the file and what is wrong with it,
    before anything compiles where it can, and every file is left as it was.
    """
    path = Path(out)
    spec = _read_spec(path)
    name = algorithm or spec["algorithm"]
    if name != spec["algorithm"]:
        raise ValueError(f"resume: {path} holds a {spec['algorithm']} run, not {name}")
    module = _algorithm(name)
    stored = _with_changes(module.Config(), name, overrides=spec["config"], within=_spec_file(path))
    errors = _Errors()  # every bad input is reported at once, in execute
    config = _changed(stored, name, errors, env, steps, overrides)
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
        checkpoint_seconds=checkpoint_seconds,
        progress=progress,
        devices=_recorded_devices(path, spec) if devices is None else devices,
        sinks=tuple(sinks),
        network=network,
        compile_cache=compile_cache,
        host=HostSettings(actors=actors, async_envs=async_envs, max_staleness=max_staleness),
    )
    return execute(module, config, settings, errors)


_XLA_HINT = "XLA_FLAGS=--xla_force_host_platform_device_count"


def _recorded_devices(path: Path, spec: dict[str, Any]) -> Any:
    """The devices a resume uses by default: as many as the run in ``path`` used."""
    n = spec.get("num_devices")
    if n is None:  # not recorded: every device, as a fresh run
        return None
    available = len(jax.devices())
    if n > available:
        raise ValueError(
            f"devices: {path} was trained on {n} devices and a resume needs as many (results "
            f"depend on the device count); {available} are available here. On a CPU set "
            f"{_XLA_HINT}={n} before JAX starts (`purerl train --resume DIR` does it for you)"
        )
    return n


def _check_device_count(path: Path, stored: dict[str, Any], used: int) -> None:
    """A resume shards the runs over as many devices as the run did, or ``ValueError``."""
    n = stored.get("num_devices")
    if n is not None and n != used:
        raise ValueError(
            f"devices: {path} was trained with its runs sharded over {n} device(s); this "
            f"resume would use {used}. Results depend on the device count (float rounding), "
            f"so resume with devices={n} (--devices {n}; on a CPU it needs {_XLA_HINT}={n})"
        )


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
_SPEC_TYPES = {"algorithm": str, "config": dict, "sweep": dict, "seeds": int, "seed_offset": int}


def _spec_file(path: Path) -> str:
    return str(path / "config.json")


def _read_spec(path: Path) -> dict[str, Any]:
    """The run record ``path/config.json``, checked: ``ValueError`` naming the file and what is
    wrong with it (a truncated or edited file is reported; no file is touched)."""
    file = path / "config.json"
    if not file.is_file():
        raise ValueError(f"resume: {path} has no config.json — not a purerl run folder")
    try:
        spec = json.loads(file.read_bytes())
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise ValueError(
            f"resume: {file} is not valid JSON ({error}): truncated or corrupted? Restore it "
            "from a copy (nothing in the folder was changed)"
        ) from None
    problems = _spec_problems(spec)
    if problems:
        raise ValueError(f"resume: {file} is not a purerl run record: {'; '.join(problems)}")
    return spec


def _spec_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return [f"expected a JSON object, got a {type(spec).__name__}"]
    problems = [] if spec.get("format") == FORMAT else [f"format is {spec.get('format')!r}"]
    for key, kind in _SPEC_TYPES.items():
        value = spec.get(key)
        if key not in spec:
            problems.append(f"{key} is missing")
        elif isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"{key} should be of type {kind.__name__}, got {value!r}")
    sweep = spec.get("sweep")
    if isinstance(sweep, dict) and not all(
        isinstance(v, list) and v and all(isinstance(x, int | float) for x in v)
        for v in sweep.values()
    ):
        problems.append(f"sweep should map fields to lists of numbers, got {sweep!r}")
    if not isinstance(spec.get("network"), str | None):
        problems.append(f"network should be a name or null, got {spec['network']!r}")
    if isinstance(spec.get("seeds"), int) and spec["seeds"] < 1:
        problems.append(f"seeds should be >= 1, got {spec['seeds']}")
    if isinstance(spec.get("seed_offset"), int) and spec["seed_offset"] < 0:
        problems.append(f"seed_offset should be >= 0, got {spec['seed_offset']}")
    n = spec.get("num_devices")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        problems.append(f"num_devices should be a whole number >= 1, got {n!r}")
    return problems


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


def _prepare_out(
    out, overwrite: bool, resume: bool, spec: dict[str, Any], used: int
) -> Path | None:
    """The results folder, made (or emptied, with ``overwrite``); a resumed one checked against
    the requested run: ``spec`` and ``used``, the number of devices it would shard over."""
    if out is None:
        if resume:
            raise ValueError("resume: needs the run folder (out=DIR / --resume DIR)")
        return None
    path = Path(out)
    if resume:
        if overwrite:
            raise ValueError("resume: cannot be combined with overwrite")
        stored = _read_spec(path)
        diffs = _spec_differences(stored, spec)
        if diffs:
            raise ValueError(
                f"resume: {path} holds a different run; refusing to mix them:\n  "
                + "\n  ".join(diffs)
            )
        _check_device_count(path, stored, used)
        return path
    full = path.exists() and any(path.iterdir())
    if full and not overwrite:
        raise ValueError(
            f"out: {path} already exists and is not empty; pass resume=True (--resume) to "
            "continue it or overwrite=True (--overwrite) to replace it"
        )
    # several processes sharing the folder: every one has looked at it before process 0
    # empties it or writes config.json (else a later one would find it full and refuse)
    _barrier("out checked")
    if jax.process_index() == 0:
        if full:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    return path


def _chunks_done(
    file: Path, extra: dict[str, np.ndarray], meta: dict[str, Any], shape, num_periods, period
) -> int:
    """The checkpoint's ``chunks_done``, once it and the metrics so far fit this run
    (``shape``: configs × seeds; ``num_periods`` chunks of ``period`` iterations)."""
    done = meta.get("chunks_done")
    if isinstance(done, bool) or not isinstance(done, int) or not 0 < done <= num_periods:
        raise ValueError(
            f"resume: checkpoint {file} is damaged (chunks_done={done!r}, the run has "
            f"{num_periods} chunks); restore it, or delete it to train from the start"
        )
    lengths = (done, done * period)  # per evaluation, per iteration
    bad = [k for k, v in extra.items() if v.shape[:2] != shape or v.shape[2:3] == ()]
    bad += [k for k, v in extra.items() if k not in bad and v.shape[2] not in lengths]
    if bad or not extra:
        raise ValueError(
            f"resume: checkpoint {file} is damaged (metrics so far {bad or 'missing'} do not "
            f"match {done} chunks of {shape[0]} configs × {shape[1]} seeds); restore it, or "
            "delete it to train from the start"
        )
    return done


def _check_checkpoint(path: Path, shape: tuple[int, int], module, config) -> None:
    """A resumed run's checkpoint, read whole and checked before anything compiles."""
    file = path / CHECKPOINT
    if file.exists():
        meta, extra = checkpoint.verify(file)
        _chunks_done(file, extra, meta, shape, *core.schedule(module, config))


class _Driver:
    """Runs the compiled chunk loop: progress, sinks, checkpoints, resume."""

    def __init__(self, module, config, keys, configs, sharding, path, settings: RunSettings):
        self.module, self.config, self.sharding = module, config, sharding
        self.path, self.every = path, settings.checkpoint_every
        self.seconds, self.saved_at = float(settings.checkpoint_seconds), time.perf_counter()
        self.sinks, self.network = _writers(settings.sinks), settings.network
        self.keys, self.configs = keys, configs
        self.num_periods, self.period = core.schedule(module, config)
        self.host = settings.host
        self.chunks: list[dict[str, np.ndarray]] = []
        self.last_state, self.done, self.compile_seconds, self.t1 = (
            None,
            0,
            0.0,
            time.perf_counter(),
        )

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
        """Fresh state, or the last checkpoint's state and metrics (checked before any use)."""
        file = None if self.path is None else self.path / CHECKPOINT
        resumed = None
        if file is not None and file.exists():
            state, extra, meta = checkpoint.load(file, template, self.sharding)
            done = _chunks_done(file, extra, meta, self.shape, self.num_periods, self.period)
            resumed = state, ([extra] if extra else []), done
        if file is not None and jax.process_index() == 0:
            for stale in self.path.glob(f".{CHECKPOINT}.*.tmp"):  # a write the kill cut short
                stale.unlink(missing_ok=True)
        return resumed or (init(self.keys, self.configs), [], 0)

    def drive(self, progress: bool, points, seeds: int):
        self.shape = (len(points), seeds)
        self.chunks, self.last_state = [], None
        t0 = time.perf_counter()
        init, compiled, template = self._compile()
        state, self.chunks, self.done = self._start(init, template)
        self.compile_seconds = time.perf_counter() - t0
        batch = self.keys.shape[0]
        steps_per_chunk = self.config.eval_every * batch
        bar = tqdm(
            total=self.num_periods * steps_per_chunk,
            initial=self.done * steps_per_chunk,
            unit="step",
            unit_scale=True,
            disable=not progress,
            desc=f"{self.config.env_id} ×{len(points)} configs ×{seeds} seeds",
            file=sys.stderr,
            dynamic_ncols=True,
        )
        saver = checkpoint.AsyncSaver()
        self.t1 = self.saved_at = time.perf_counter()
        try:
            state = self._train(compiled, state, bar, saver)
        finally:
            saver.wait()
            bar.close()
        chunks = self.chunks
        stacked = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
        return state, stacked, self.timing()

    def timing(self) -> dict[str, Any]:
        """Compile and training seconds so far, where the run resumed, its chunk count."""
        return {
            "compile_seconds": self.compile_seconds,
            "train_seconds": time.perf_counter() - self.t1,
            "resumed_at_chunk": self.done,
            "chunks": self.num_periods,
        }

    def _train(self, compiled, state, bar, saver):
        pending = None
        # Dispatch chunk i+1 before handling chunk i on the host (metrics, sinks, checkpoint):
        # the device always has queued work while the host writes.
        for i in range(self.done, self.num_periods):
            state, metrics = compiled(state)
            if pending is not None:
                self._handle(*pending, self.chunks, bar, saver)
            pending = (i, state, metrics)
        if pending is not None:
            self._handle(*pending, self.chunks, bar, saver)
        return jax.block_until_ready(state)

    def _handle(self, i, state, metrics, chunks, bar, saver) -> None:
        self.last_state = state
        # [configs × seeds, T] -> [configs, seeds, T]
        metrics = {k: v.reshape(self.shape + v.shape[1:]) for k, v in _to_host(metrics).items()}
        chunks.append(metrics)
        bar.update(self.config.eval_every * self.keys.shape[0])
        score = float(np.mean(metrics["eval_return"][..., -1]))
        short = abs(score) >= 10 or score == round(score, 1)
        postfix = {"eval_return": f"{score:.1f}" if short else f"{score:.3g}"}
        diverged = int(np.sum(_to_host(state.diverged_at) >= 0))
        if diverged:  # frozen runs (non-finite loss or parameters): see core.run_periods
            postfix["diverged"] = f"{diverged}/{self.keys.shape[0]}"
        bar.set_postfix(postfix)
        for sink in self.sinks:
            sink.write(i, metrics)
        due = _checkpoint_due(
            i, self.num_periods, self.every, self.seconds, time.perf_counter() - self.saved_at
        )
        if jax.process_count() > 1 and self.every is None:
            # each host has its own clock, and the gather of a checkpoint needs every host
            from jax.experimental import multihost_utils

            due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
        if self.path is not None and due:
            so_far = {k: np.concatenate([c[k] for c in chunks], axis=2) for k in chunks[0]}
            saver.submit(self.path / CHECKPOINT, state, so_far, {"chunks_done": i + 1})
            self.saved_at = time.perf_counter()


class _HostDriver(_Driver):
    """The chunk loop for a host environment: each chunk is one period of the actor–learner
    loop (``actor_learner.ActorLearner``) instead of a compiled call; progress, sinks,
    checkpoints and resume are ``_Driver``'s."""

    def _compile(self):
        module, network = self.module, self.network

        def init_batch(keys, configs):
            return jax.vmap(lambda k, c: core.init(module, k, c, network))(keys, configs)

        init = jax.jit(init_batch, out_shardings=self.sharding)
        return init, None, jax.eval_shape(init, self.keys, self.configs)

    def _train(self, compiled, state, bar, saver):
        settings = self.host
        self.loop = ActorLearner(self.module, self.config, settings, self.keys.shape[0])
        try:
            self.loop.start(state, resumed=self.done > 0)
            for i in range(self.done, self.num_periods):
                state, metrics = self.loop.run_period(state)
                self._handle(i, state, metrics, self.chunks, bar, saver)
        finally:
            self.loop.close()
        return state

    def timing(self) -> dict[str, Any]:
        loop = getattr(self, "loop", None)
        return {**super().timing(), "host": None if loop is None else loop.summary()}


def _checkpoint_due(i: int, chunks: int, every: int | None, seconds: float, since: float) -> bool:
    """Whether chunk ``i`` (of ``chunks``) ends with a checkpoint: never when ``every`` is 0;
    always after the last chunk; otherwise every ``every`` chunks, or — ``every`` ``None`` —
    once ``seconds`` of training passed ``since`` the last checkpoint (or the start). Time, not
    chunks, by default: a checkpoint of a large state (256 DQN replay buffers: 0.5 GB) costs
    seconds, so writing one per short chunk would slow training by 10% or more."""
    if every == 0:
        return False
    if i + 1 == chunks:
        return True
    return since >= seconds if every is None else (i + 1) % every == 0
