"""L4 results on disk: the ``Result`` record, ``summary.json`` statistics, writing
``metrics.npz`` / ``metrics.csv`` / ``eval.csv`` / ``summary.json``, reading a run folder back
(``load_run``) and comparing runs (``compare``). Imports nothing of the driver, so plotting and
the ``purerl plot`` / ``compare`` commands read results without the training machinery."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.sharding import NamedSharding

from purerl import stats

__all__ = ["CHECKPOINT", "FORMAT", "Result", "compare", "load_run", "write_results"]

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
        summary: final greedy return per config (per seed, mean, IQM + 95% CI), timings, the
            number of devices the runs were sharded over (``num_devices``), and
            ``summary["diverged"]``: the runs that went non-finite (config, swept values,
            seed, env step), frozen at their last finite state (empty when none did).
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


def _diverged_runs(
    diverged_at: np.ndarray, points: list[dict[str, float]], seed_offset: int = 0
) -> list[dict[str, Any]]:
    """The runs that diverged (went non-finite and were frozen; see ``core.run_periods``).

    Args:
        diverged_at: ``[configs, seeds]`` env steps where each run diverged, ``-1`` if never.
        points: the swept values of each config.
        seed_offset: the first seed.

    Returns:
        One dict per diverged run: ``config`` (index), ``point`` (its swept values), ``seed``
        (the ``PRNGKey`` seed, as in ``metrics.csv``), ``seed_index`` (for
        ``Result.state_of``) and ``env_step`` (where its first non-finite iteration began).
    """
    at = np.asarray(diverged_at)
    return [
        {
            "config": int(c),
            "point": points[c],
            "seed": seed_offset + int(s),
            "seed_index": int(s),
            "env_step": int(at[c, s]),
        }
        for c, s in zip(*np.nonzero(at >= 0), strict=True)
    ]


def _summarize(
    metrics, timing, config, points, seeds: int, diverged_at=None, seed_offset: int = 0
) -> dict[str, Any]:
    final = metrics["eval_return"][:, :, -1]  # [configs, seeds]
    if diverged_at is None:
        diverged_at = np.full(final.shape, -1)
    per_config = [
        {
            "point": p,
            "final_return_per_seed": final[c].tolist(),
            "diverged_at_per_seed": np.asarray(diverged_at[c]).tolist(),
            **stats.summarize(final[c]),
        }
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
        # runs whose loss/parameters went non-finite: frozen at their last finite state
        "diverged": _diverged_runs(diverged_at, points, seed_offset),
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
