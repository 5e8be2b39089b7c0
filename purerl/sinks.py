"""L4: optional logging sinks — TensorBoard event files and Weights & Biases.

A sink is fed on the host between compiled chunks (never from inside the compiled loop) with
that chunk's metrics, ``[configs, seeds, iterations]``. It logs, at the env step that closes
the chunk, for every config:

- per seed: the evaluation metrics and the chunk mean of every per-iteration metric
  (episode statistics averaged over the episodes that actually finished, never a padded 0);
- aggregate over seeds: mean and interquartile mean of the same numbers.

Install the extras with ``pip install "purerl[tensorboard]"`` (``tensorboardX``) or
``pip install wandb``.

Example:
    >>> purerl.run("ppo", "CartPole-v1", seeds=8, out="runs/ppo", sinks=[TensorBoardSink()])
    $ tensorboard --logdir runs/ppo/tensorboard
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from purerl import stats

__all__ = ["chunk_summary", "config_label", "TensorBoardSink", "WandbSink"]

_EPISODE_KEYS = ("episode_return", "episode_length")


def chunk_summary(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One number per config × seed for a chunk: the last evaluation for ``eval_*`` keys, the
    mean over iterations otherwise — for episode statistics the mean over finished episodes
    (``NaN`` where none finished, so it is never mistaken for a real zero)."""
    count = metrics.get("episode_count")
    out = {}
    for name, value in metrics.items():
        value = np.asarray(value, np.float64)
        if name.startswith("eval_"):
            out[name] = value[..., -1]
        elif name in _EPISODE_KEYS and count is not None:
            total = np.asarray(count, np.float64).sum(-1)
            weighted = (value * count).sum(-1)
            out[name] = np.where(total > 0, weighted / np.maximum(total, 1), np.nan)
        else:
            out[name] = value.mean(-1)
    return out


def config_label(point: dict[str, float], index: int) -> str:
    """``"learning_rate=0.001,gamma=0.99"`` for a sweep point (``"config0"`` without a sweep)."""
    if not point:
        return f"config{index}"
    return ",".join(f"{k}={v:g}" for k, v in point.items())


def _env_step(metrics: dict[str, np.ndarray], config: int) -> int:
    return int(np.max(metrics["eval_env_steps"][config, :, -1]))


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"sinks: {module} is not installed; pip install {extra!r} to log there"
        ) from None


class TensorBoardSink:
    """TensorBoard event files under ``logdir`` (default ``OUT/tensorboard``): one TensorBoard
    run per config and seed (``LABEL/seed_3``) and one aggregate run per config
    (``LABEL/aggregate``: ``*/mean`` and ``*/iqm`` over seeds)."""

    def __init__(self, logdir: str | Path | None = None, per_seed: bool = True):
        self._module = _require("tensorboardX", "purerl[tensorboard]")
        self.logdir, self.per_seed = logdir, per_seed
        self._writers: dict[str, Any] = {}

    def open(self, info: dict[str, Any]) -> None:
        """Start a run described by ``info`` (``run``'s spec: points, seeds, out folder)."""
        root = self.logdir or (Path(info["out"]) / "tensorboard" if info.get("out") else None)
        if root is None:
            raise ValueError("sinks: TensorBoardSink needs logdir=... when run() has no out")
        self.root, self.points, self.seeds = Path(root), info["points"], int(info["seeds"])
        self.offset = int(info.get("seed_offset", 0))

    def _writer(self, name: str) -> Any:
        if name not in self._writers:
            self._writers[name] = self._module.SummaryWriter(str(self.root / name))
        return self._writers[name]

    def write(self, chunk: int, metrics: dict[str, np.ndarray]) -> None:
        """Log one chunk of metrics ``[configs, seeds, iterations]``."""
        summary = chunk_summary(metrics)
        for c, point in enumerate(self.points):
            label, step = config_label(point, c), _env_step(metrics, c)
            aggregate = self._writer(f"{label}/aggregate")
            for name, values in summary.items():
                finite = values[c][np.isfinite(values[c])]
                if finite.size:
                    aggregate.add_scalar(f"{name}/mean", float(finite.mean()), step)
                    aggregate.add_scalar(f"{name}/iqm", float(stats.iqm(finite)), step)
                if self.per_seed:
                    for s in range(self.seeds):
                        if np.isfinite(values[c, s]):
                            writer = self._writer(f"{label}/seed_{self.offset + s}")
                            writer.add_scalar(name, float(values[c, s]), step)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every event file."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class WandbSink:
    """Weights & Biases: one W&B run for the whole experiment; per config the mean and IQM over
    seeds of every chunk summary (and per seed values when ``per_seed``). ``wandb.init``
    keyword arguments (``project``, ``mode``, ...) pass through."""

    def __init__(self, per_seed: bool = False, **init_kwargs: Any):
        self._wandb = _require("wandb", "wandb")
        self.per_seed = per_seed
        self.init_kwargs = {"project": os.environ.get("WANDB_PROJECT", "purerl"), **init_kwargs}

    def open(self, info: dict[str, Any]) -> None:
        """``wandb.init`` with the run's spec as the W&B config."""
        self.points, self.seeds = info["points"], int(info["seeds"])
        self.run = self._wandb.init(config=info, **self.init_kwargs)

    def write(self, chunk: int, metrics: dict[str, np.ndarray]) -> None:
        """Log one chunk of metrics ``[configs, seeds, iterations]``."""
        summary = chunk_summary(metrics)
        for c, point in enumerate(self.points):
            label = config_label(point, c)
            data: dict[str, float] = {}
            for name, values in summary.items():
                finite = values[c][np.isfinite(values[c])]
                if finite.size:
                    data[f"{label}/{name}/mean"] = float(finite.mean())
                    data[f"{label}/{name}/iqm"] = float(stats.iqm(finite))
                if self.per_seed:
                    data.update(
                        {f"{label}/seed_{s}/{name}": float(v) for s, v in enumerate(values[c])}
                    )
            data["env_steps"] = _env_step(metrics, c)
            self._wandb.log(data)

    def close(self) -> None:
        """Finish the W&B run."""
        self.run.finish()
