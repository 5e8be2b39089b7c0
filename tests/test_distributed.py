"""Several processes for real: ``purerl.run(..., devices="all")`` after
``jax.distributed.initialize`` in 2 local processes (CPU, a localhost coordinator, gloo
collectives), each one running ``tests/distributed_worker.py``.

- the results equal, bit for bit, those of 1 process with as many devices (2 processes ×
  1 device vs 1 process × 2 devices, and 2 × 2 vs 1 × 4), and every process gets them back
  from ``run``;
- only process 0 writes files (each process is given its own folder, as on hosts without a
  shared disk: process 1's is never created);
- processes that share one folder (one host, or a shared disk) do not trip over each other;
- a process killed mid-training makes the other exit with an error within seconds instead of
  hanging (a collective with a dead peer fails at once; the distributed runtime's shutdown
  then waits at most ``heartbeat_timeout_seconds`` for the dead one).

Every subprocess has a timeout and is killed in a ``finally``: the tests cannot hang. Each
process costs ~10 s of CPU (imports, compiles); the runs themselves are tiny.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.multiprocess

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 300  # seconds to wait for a worker's step (they take ~10-30 s on 2 busy cores)
# heartbeat_timeout_seconds of the kill test: a dead process is noticed within this. Not
# shorter: with 5 s, CI once declared both live processes dead (their heartbeats starved while
# XLA compiled on 2 busy cores), so process 0 aborted before process 1 was even killed.
HEARTBEAT = 30
EXIT_BOUND = HEARTBEAT + 30  # seconds within which the survivor of a kill must exit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(log: Path, devices: int, **args) -> subprocess.Popen:
    """One worker process with ``devices`` CPU devices; stdout and stderr go to ``log``."""
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    with log.open("w") as f:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(args)],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # killed as a group in _stop
        )


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _report(proc: subprocess.Popen, log: Path, run: int = 0) -> dict:
    """The JSON report of ``proc``'s ``run`` (the line it prints once ``run`` returned)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        for line in log.read_text().split("\n")[:-1]:  # whole lines only
            if line.startswith("{") and json.loads(line)["run"] == run:
                return json.loads(line)
        assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{_tail(log)}"
        assert time.monotonic() < deadline, f"no result after {TIMEOUT} s:\n{_tail(log)}"
        time.sleep(0.1)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _arrays(file: Path) -> dict[str, np.ndarray]:
    with np.load(file) as data:
        return {k: data[k] for k in data.files if k != "meta.json"}


class _Cluster:
    """2 processes × ``local`` CPU devices (``root/process0``, ``root/process1``: as on two
    hosts' own disks) and the single-process run on ``2 * local`` devices (``root/single``),
    all started at once."""

    def __init__(self, root: Path, local: int):
        self.local, self.total = local, 2 * local
        self.outs = [root / "process0", root / "process1", root / "single"]
        self.logs = [root / f"{name}.log" for name in ("process0", "process1", "single")]
        runs = [[dict(seeds=self.total, steps=400, out=str(out))] for out in self.outs]
        port = _free_port()
        self.procs = []
        try:
            for i in range(2):
                args = dict(processes=2, process_id=i, port=port)  # JAX's heartbeat
                self.procs.append(_start(self.logs[i], local, **args, runs=runs[i]))
            self.procs.append(_start(self.logs[2], self.total, processes=1, runs=runs[2]))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        _stop(self.procs)


def _check_same_results_and_only_process_0_writes(cluster: _Cluster) -> None:
    """The 2-process run equals the single-process one bitwise (metrics on disk and returned
    on every process, final state, summary), and process 1 wrote no file."""
    reports = [_report(p, log) for p, log in zip(cluster.procs, cluster.logs, strict=True)]
    assert cluster.procs[2].wait(timeout=TIMEOUT) == 0, _tail(cluster.logs[2])
    local, total = cluster.local, cluster.total
    first, second, reference = reports
    assert [r["process_index"] for r in reports] == [0, 1, 0]
    assert [r["process_count"] for r in reports] == [2, 2, 1]
    assert [r["local_devices"] for r in reports] == [local, local, total]
    assert {r["devices"] for r in reports} == {r["num_devices"] for r in reports} == {total}

    out, out1, single = cluster.outs
    assert not out1.exists()  # process 1 wrote nothing: its folder was never even created
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in single.iterdir())
    assert {"config.json", "summary.json", "metrics.npz", "checkpoint.npz"} <= set(written)

    for name in ("metrics.npz", "checkpoint.npz"):
        got, want = _arrays(out / name), _arrays(single / name)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}:{k}")
    for report in (first, second):
        assert report["metrics"] == reference["metrics"]
        assert report["final_return_per_seed"] == reference["final_return_per_seed"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_return_per_seed"] == reference["final_return_per_seed"]
    config = json.loads((out / "config.json").read_text())
    assert (config["num_processes"], config["num_devices"]) == (2, total)
    assert json.loads((single / "config.json").read_text())["num_processes"] == 1


@pytest.mark.parametrize("local", [1, 2])
def test_two_processes_give_the_results_of_one_with_as_many_devices(local, tmp_path):
    """2 processes × ``local`` CPU devices vs 1 process × ``2 * local`` devices: one seed per
    device either way (with 2 local devices, the global device order, process 0's then
    process 1's, keeps the seeds in order); only process 0 writes files."""
    cluster = _Cluster(tmp_path, local)
    try:
        _check_same_results_and_only_process_0_writes(cluster)
    finally:
        cluster.stop()


def test_killing_one_process_makes_the_other_exit_with_an_error_instead_of_hanging(tmp_path):
    """SIGKILL process 1 once a long run trains: process 0 exits non-zero within
    ``EXIT_BOUND`` seconds. Both use one folder, process 1 calling ``run`` a second after
    process 0: it must not find the folder already written to (and refuse it as not empty)."""
    shared, marker = tmp_path / "shared", tmp_path / "training"
    run = dict(seeds=2, steps=2_000_000, out=str(shared), marker=str(marker), delay=1)
    args = dict(processes=2, port=_free_port(), heartbeat=HEARTBEAT, runs=[run])
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    procs = []
    try:
        procs = [_start(logs[i], 1, **args, process_id=i) for i in range(2)]
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists():  # chunk 1 reached process 0: both are training
            for p, log in zip(procs, logs, strict=True):
                assert p.poll() is None, f"a worker exited early:\n{_tail(log)}"
            assert time.monotonic() < deadline, "the run never started training"
            time.sleep(0.1)
        assert (shared / "config.json").exists()
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        try:
            rc = procs[0].wait(timeout=EXIT_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"process 0 runs on {EXIT_BOUND} s after process 1 was killed:\n{_tail(logs[0])}"
            )
        took = time.monotonic() - killed
    finally:
        _stop(procs)
    assert rc != 0, _tail(logs[0])
    assert not (shared / "summary.json").exists()  # the run did not finish
    print(f"process 0 exited with {rc} {took:.1f} s after process 1 was killed")
