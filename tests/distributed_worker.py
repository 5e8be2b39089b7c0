"""One process of a several-process ``purerl.run`` (``tests/test_distributed.py`` starts them).

Usage: ``python tests/distributed_worker.py JSON`` with the fields

- ``processes``, ``process_id``, ``port``: ``jax.distributed.initialize`` on a localhost
  coordinator (skipped for ``processes == 1``, the single-process reference run);
- ``heartbeat``: ``heartbeat_timeout_seconds`` of the distributed runtime;
- ``runs``: the runs to make one after the other, each a tiny DQN on a probe env with
  ``devices="all"``: ``out``, ``seeds``, ``steps``, and optionally ``marker`` (a file process 0
  creates once chunk 1 arrived: training is under way) and ``delay`` (seconds process 1 waits
  before calling ``run``, so that process 0 is ahead of it).

JAX's devices come from the environment (``JAX_PLATFORMS=cpu``,
``XLA_FLAGS=--xla_force_host_platform_device_count=N``). After each run one JSON line goes to
stdout: what ``run`` returned on this process (its metrics as lists, the final returns).
"""

import json
import sys
import time
from pathlib import Path

import jax


class _Marker:
    """A logging sink that touches ``file`` once chunk 1 arrives (fed on process 0 only)."""

    def __init__(self, file):
        self.file = file

    def open(self, info):
        pass

    def write(self, chunk, metrics):
        if chunk >= 1 and self.file and not Path(self.file).exists():
            Path(self.file).touch()

    def close(self):
        pass


def main() -> None:
    args = json.loads(sys.argv[1])
    if args["processes"] > 1:
        jax.distributed.initialize(
            coordinator_address=f"localhost:{args['port']}",
            num_processes=args["processes"],
            process_id=args["process_id"],
            heartbeat_timeout_seconds=args.get("heartbeat", 100),
        )
    from resume_check import TINY  # tests/ is sys.path[0]: this script lives there

    import purerl

    for i, run in enumerate(args["runs"]):
        if jax.process_index() == 1:
            time.sleep(run.get("delay", 0))
        result = purerl.run(
            "dqn",
            "ObsReward-probe",
            seeds=run["seeds"],
            steps=run["steps"],
            overrides=TINY,
            out=run["out"],
            devices="all",
            progress=False,
            sinks=[_Marker(run.get("marker"))],
        )
        print(json.dumps({"run": i, **_report(result)}), flush=True)


def _report(result) -> dict:
    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": len(jax.devices()),
        "local_devices": jax.local_device_count(),
        "final_return_per_seed": result.summary["final_return_per_seed"],
        "num_devices": result.summary["num_devices"],
        "metrics": {k: v.tolist() for k, v in result.metrics.items()},
    }


if __name__ == "__main__":
    main()
