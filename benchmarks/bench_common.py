"""Helpers shared by the benchmark scripts: the machine string and fresh-process cells."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def machine() -> str:
    """CPU model, core count, JAX platform and version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax

    return f"{cpu}, {os.cpu_count()} cores, {jax.devices()[0].platform}, jax {jax.__version__}"


def in_fresh_process(
    script: str, args: list[str], devices: int, taskset: str | None = None
) -> dict:
    """Run ``script --cell ARGS`` in a fresh Python with ``devices`` XLA host devices and
    return the JSON it prints last."""
    cmd = [sys.executable, script, "--cell", *args]
    if taskset:
        cmd = ["taskset", "-c", taskset, *cmd]
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def sharded_keys(seeds: int, per_seed: bool = False):
    """``(keys, sharding)`` for ``seeds`` runs, sharded over every XLA host device that divides
    ``seeds``. Keys are ``split(PRNGKey(0), seeds)``, or ``PRNGKey(i)`` for seed i when
    ``per_seed`` (the keys ``purerl.run`` uses)."""
    import jax
    import numpy as np

    from purerl.experiment import seed_sharding

    sharding = seed_sharding(seeds, jax.devices())
    if per_seed:
        keys = jax.vmap(jax.random.PRNGKey)(np.arange(seeds))
    else:
        keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    return jax.device_put(keys, sharding), sharding


def time_train(train, keys, sharding) -> tuple[dict, float, float]:
    """Compile ``jit(vmap(train))`` for ``keys`` and run it once: ``(metrics as NumPy,
    compile seconds, train seconds)``; training time excludes compilation."""
    _, metrics, compile_s, train_s = time_train_with_state(train, keys, sharding)
    return metrics, compile_s, train_s


def time_train_with_state(train, keys, sharding) -> tuple[object, dict, float, float]:
    """``time_train`` that also returns the final states (one per key, sharded)."""
    import time

    import jax
    import numpy as np

    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(train), in_shardings=sharding, out_shardings=sharding)
    compiled = compiled.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    states, metrics = compiled(keys)
    jax.block_until_ready(metrics)
    train_s = time.perf_counter() - t1
    return states, {k: np.asarray(v) for k, v in metrics.items()}, compile_s, train_s


def save_rows(path, rows: list[dict], key, sort=None) -> list[dict]:
    """Write ``{"machine", "rows"}`` to the JSON file ``path``, keeping the rows of an earlier
    run whose ``key(row)`` this run did not measure (so parts can be rerun one at a time);
    ``sort`` orders the result. Returns the rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        new = {key(r) for r in rows}
        rows = [r for r in json.loads(path.read_text())["rows"] if key(r) not in new] + rows
    if sort is not None:
        rows = sorted(rows, key=sort)
    path.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return rows


# Runs in rejax's venv: imports only rejax, gymnax 0.0.9 and jax; prints one JSON line.
_REJAX_CELL = r"""
import json, sys, time
import jax, numpy as np
from rejax import get_algo
from rejax.evaluate import evaluate

env_id, algo_name = sys.argv[1:3]
seeds, total, every, episodes = map(int, sys.argv[3:7])
config = json.loads(sys.argv[7])
cls = get_algo(algo_name)
algo = cls.create(env=env_id, total_timesteps=total, eval_freq=every, **config)

def eval_callback(algo, ts, rng):
    act = algo.make_act(ts)
    return evaluate(act, rng, algo.env, algo.env_params, episodes,
                    algo.env_params.max_steps_in_episode)

algo = algo.replace(eval_callback=eval_callback)
keys = jax.random.split(jax.random.PRNGKey(0), seeds)
t0 = time.perf_counter()
compiled = jax.jit(jax.vmap(cls.train, in_axes=(None, 0))).lower(algo, keys).compile()
compile_s = time.perf_counter() - t0
t1 = time.perf_counter()
_, (lengths, returns) = compiled(algo, keys)
jax.block_until_ready(returns)
train_s = time.perf_counter() - t1
curve = np.asarray(returns).mean(-1)  # [seeds, evaluations]: the initial one, then every `every`
print(json.dumps({"compile_s": compile_s, "train_s": train_s, "eval_curve": curve.tolist(),
                  "eval_steps": [every * i for i in range(curve.shape[1])],
                  "jax": jax.__version__}))
"""


def rejax_cell(
    python: str, env_id: str, algo: str, config: dict, seeds: int, steps: int, every: int,
    episodes: int,
) -> dict:  # fmt: skip
    """Train ``seeds`` vmapped rejax 0.1.3 agents (``split(PRNGKey(0), seeds)``) in rejax's
    venv ``python`` with rejax's own ``config``: compile and train seconds, and the return of
    ``episodes`` evaluation episodes every ``every`` env steps, from step 0 (rejax's act)."""
    args = [env_id, algo, str(seeds), str(steps), str(every), str(episodes), json.dumps(config)]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [python, "-c", _REJAX_CELL, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd="/",  # so the purerl checkout is not on rejax's path
    ).stdout
    return json.loads(out.strip().splitlines()[-1])
