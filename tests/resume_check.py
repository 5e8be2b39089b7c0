"""Shared by the run-folder tests: a tiny DQN config (``TINY``), and the checkpoint check of
every algorithm (``test_core``) and of the recurrent agents (``test_recurrent``): interrupt a
run after its first chunk, resume it, and check the result is bit for bit the uninterrupted
run."""

import time

import equinox as eqx
import jax
import numpy as np
import pytest

import purerl

# ``--set`` overrides of a tiny DQN run on a probe env (test_experiment, test_fuzz_inputs): one
# program, so the compile cache serves both files
TINY = {
    "eval_every": "200",
    "learning_starts": "32",
    "batch_size": "32",
    "buffer_size": "500",
    "num_envs": "4",
    "eval_envs": "2",
    "hidden_sizes": "16",
}


class Interrupt(Exception):
    pass


class FailAtChunk:
    """A logging sink that raises when chunk ``n`` arrives: the run stops as if killed, after
    the checkpoints of the earlier chunks were handed to the writer."""

    def __init__(self, n):
        self.n = n

    def open(self, info):
        pass

    def write(self, chunk, metrics):
        if chunk >= self.n:
            raise Interrupt

    def close(self):
        pass


def _arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def check_interrupted_resume_is_bit_exact(name, config, tmp_path):
    """Run ``config`` whole, then cut after chunk 0 (a checkpoint every chunk) and resume:
    the metrics and final state must be identical. Returns the resumed result."""
    whole = purerl.run(name, config=config, seeds=2, out=tmp_path / "whole", progress=False)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):  # once chunk 0's checkpoint is handed to the writer
        purerl.run(
            name,
            config=config,
            seeds=2,
            out=cut,
            progress=False,
            sinks=[FailAtChunk(1)],
            checkpoint_every=1,
        )
    deadline = time.time() + 60
    while not (cut / "checkpoint.npz").exists() and time.time() < deadline:
        time.sleep(0.05)  # the background writer finishes the first checkpoint
    resumed = purerl.resume(cut, progress=False)
    assert resumed.summary["resumed_at_chunk"] == 1
    for k, v in whole.metrics.items():
        np.testing.assert_array_equal(resumed.metrics[k], v, err_msg=k)
    for a, b in zip(_arrays(resumed.state), _arrays(whole.state), strict=True):
        np.testing.assert_array_equal(a, b)
    return resumed
