"""L4: plots of finished runs — learning curves with confidence bands, final performance.

Both plots aggregate over seeds with ``purerl.stats``: interquartile mean (or mean) and a 95%
stratified-bootstrap interval (Agarwal et al., 2021). Every run folder contributes one line per
sweep point. Needs matplotlib (``pip install "purerl[plot]"``).

Example:
    >>> fig = learning_curves(["runs/dqn_lr", "runs/ppo"])      # one curve per config
    >>> plot_runs(["runs/dqn_lr"], out="figures")               # PNG + SVG files
    $ purerl plot runs/dqn_lr runs/ppo --out figures
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purerl import stats
from purerl.experiment.results import load_run
from purerl.sinks import config_label

__all__ = ["curves", "learning_curves", "final_performance", "plot_runs"]

_STATISTICS = {"iqm": stats.iqm, "mean": stats.mean, "median": stats.median}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError('plot: matplotlib is not installed; pip install "purerl[plot]"') from None
    return plt


def _runs(runs: Sequence[Any]) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else load_run(r) for r in runs]


def _label(run: dict[str, Any], c: int, several: bool) -> str:
    points = run["config"]["points"]
    name = f"{run['config']['algorithm']} {run['path'].name}" if several else ""
    part = config_label(points[c], c) if len(points) > 1 else ""
    return " ".join(x for x in (name, part) if x) or run["config"]["algorithm"]


def _statistic(statistic: str):
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic: must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    return _STATISTICS[statistic]


def curves(
    run: dict[str, Any], metric: str = "eval_return", statistic: str = "iqm", reps: int = 1_000
) -> list[dict[str, np.ndarray]]:
    """Per config: ``{"x": env steps, "y": statistic over seeds, "low"/"high": 95% CI}``."""
    f = _statistic(statistic)
    metrics = run["metrics"]
    if metric not in metrics:
        raise ValueError(f"metric: {metric!r} not recorded; available: {sorted(metrics)}")
    values = metrics[metric]  # [configs, seeds, T]
    x_key = "eval_env_steps" if metric.startswith("eval_") else "env_steps"
    out = []
    for c in range(values.shape[0]):
        per_time = np.swapaxes(values[c], 0, 1)  # [T, seeds]
        low, high = stats.bootstrap_ci(per_time, f, reps=reps)
        x = metrics[x_key][c, 0] if x_key in metrics else np.arange(per_time.shape[0])
        out.append({"x": x, "y": f(per_time, axis=-1), "low": low, "high": high})
    return out


def learning_curves(
    runs: Sequence[Any], metric: str = "eval_return", statistic: str = "iqm", ax: Any = None
) -> Any:
    """Learning curves of ``metric`` against env steps: one line per run × sweep point, with a
    shaded 95% stratified-bootstrap band. ``runs`` are folders or ``load_run`` dicts.
    Returns the matplotlib ``Figure``."""
    plt = _pyplot()
    runs = _runs(runs)
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4.5))
    for run in runs:
        for c, curve in enumerate(curves(run, metric, statistic)):
            (line,) = ax.plot(curve["x"], curve["y"], label=_label(run, c, len(runs) > 1))
            ax.fill_between(
                curve["x"], curve["low"], curve["high"], color=line.get_color(), alpha=0.2
            )
    seeds = sorted({r["metrics"][metric].shape[1] for r in runs})
    ax.set_xlabel("environment steps per run")
    ax.set_ylabel(f"{metric} ({statistic.upper() if statistic == 'iqm' else statistic})")
    ax.set_title(f"{statistic.upper()} over {'/'.join(map(str, seeds))} seeds, 95% bootstrap CI")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def final_performance(
    runs: Sequence[Any], metric: str = "eval_return", statistic: str = "iqm", ax: Any = None
) -> Any:
    """Interval plot of the last ``metric`` value: the statistic over seeds with its 95%
    stratified-bootstrap interval, one row per run × sweep point. Returns the ``Figure``."""
    plt = _pyplot()
    runs = _runs(runs)
    f = _statistic(statistic)
    rows = []
    for run in runs:
        final = run["metrics"][metric][..., -1]  # [configs, seeds]
        for c in range(final.shape[0]):
            low, high = stats.bootstrap_ci(final[c], f)
            rows.append((_label(run, c, len(runs) > 1), float(f(final[c])), low, high))
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(rows)))
    ys = np.arange(len(rows))[::-1]
    for y, (_, value, low, high) in zip(ys, rows, strict=True):
        ax.plot([low, high], [y, y], linewidth=6, alpha=0.35, solid_capstyle="butt")
        ax.plot([value], [y], "k|", markersize=14)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.set_xlabel(f"final {metric} ({statistic.upper()}, 95% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_runs(
    runs: Sequence[Any],
    out: str | Path | None = None,
    metric: str = "eval_return",
    statistic: str = "iqm",
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Write ``learning_curves.*`` and ``final_performance.*`` for ``runs`` into ``out``
    (default: the first run's folder). Returns the files written."""
    plt = _pyplot()
    runs = _runs(runs)
    if not runs:
        raise ValueError("runs: give at least one run folder")
    folder = Path(out) if out is not None else runs[0]["path"]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in (
        ("learning_curves", learning_curves),
        ("final_performance", final_performance),
    ):
        fig = make(runs, metric, statistic)
        for fmt in formats:
            file = folder / f"{name}.{fmt}"
            fig.savefig(file, dpi=120)
            written.append(file)
        plt.close(fig)
    return written
