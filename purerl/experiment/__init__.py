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
  stratified-bootstrap interval; timings, throughput and ``num_devices`` (the devices the runs
  were sharded over; a resume must use as many); ``diverged``: every run whose loss
  or parameters went non-finite (config index, swept values, seed, env step), frozen at its
  last finite state (``core.run_periods``) while the others trained on;
- ``checkpoint.npz`` — the last checkpoint (whole training state + metrics so far), written at
  most once a minute of training by default (``checkpoint_seconds``) and at the end, or every
  ``checkpoint_every`` chunks.
"""

from purerl.experiment.actor_learner import ActorLearnerError, HostSettings
from purerl.experiment.driver import (
    RunSettings,
    compile_cache_dir,
    enable_compile_cache,
    resume,
    run,
    seed_sharding,
)
from purerl.experiment.results import Result, compare, load_run, write_results
from purerl.experiment.sweeps import (
    config_to_dict,
    make_config,
    make_grid,
    sweepable_fields,
)

__all__ = [
    "ActorLearnerError",
    "HostSettings",
    "Result",
    "RunSettings",
    "compile_cache_dir",
    "enable_compile_cache",
    "compare",
    "config_to_dict",
    "load_run",
    "make_config",
    "make_grid",
    "resume",
    "run",
    "seed_sharding",
    "sweepable_fields",
    "write_results",
]
