"""Stable-Baselines3 reference run on LunarLander-v3: DQN or PPO, one seed, one JSON line.

This script is the PyTorch side of a purerl comparison. It does not import purerl (or JAX)
and runs in its own virtualenv, made outside the repo with the exact commands used:

    python -m venv /work/venvs/sb3
    /work/venvs/sb3/bin/python -m pip install --upgrade pip
    /work/venvs/sb3/bin/python -m pip install torch --index-url https://download.pytorch.org/whl/cpu
    /work/venvs/sb3/bin/python -m pip install stable-baselines3 "gymnasium[box2d]>=1.0"

(where the CPU index is unreachable, a plain ``pip install torch`` does). Versions measured
with: stable-baselines3 2.9.2, torch 2.13.0+cpu, gymnasium 1.4.0, Box2D 2.3.10, numpy 2.4.6,
Python 3.11.7. Run it as, e.g.::

    /work/venvs/sb3/bin/python benchmarks/sb3_lunarlander.py --algo dqn --seed 0 \\
        --steps 100000 --eval-every 10000
    /work/venvs/sb3/bin/python benchmarks/sb3_lunarlander.py --algo ppo --seed 0 \\
        --steps 200704 --eval-every 16384 --n-envs 16 --n-steps 1024

It prints one JSON line on stdout: library, algorithm, seed, total_steps (env steps actually
taken; PPO finishes its last rollout, so this can exceed ``--steps``), wall_seconds (time in
``model.learn`` less the time spent evaluating), env_steps_per_second, eval_steps and
eval_returns (see below), hyperparameters and versions.

Evaluation: after the first policy update at or past each multiple of ``--eval-every`` env
steps, and once more at the end of training unless the last evaluation was already there,
the policy plays ``--eval-episodes`` greedy (``deterministic=True``) episodes on its own
LunarLander-v3 env, episode k reset with seed 10_000 + k, and the mean undiscounted return is
recorded together with the env step count at that moment. The check runs at the start of
each rollout, i.e. after the previous rollout's training, so the policy evaluated is the
updated one: DQN collects 4 steps per rollout (exact multiples of ``--eval-every`` when it is
a multiple of 4); PPO collects ``n_envs * n_steps`` steps per rollout, so choose
``--eval-every`` as a multiple of that to get evenly spaced points.

Torch runs with one thread (``torch.set_num_threads(1)``) on the CPU and the PPO envs are a
``DummyVecEnv`` in the same process, so one run is a single-core learner, comparable with one
purerl learner process.

Hyperparameters are rl-baselines3-zoo's published LunarLander ones (rl-baselines3-zoo
``hyperparams/dqn.yml`` and ``hyperparams/ppo.yml``, ``LunarLander-v2`` entries; v3 is the
same task with bug fixes); the values used are echoed into the JSON. DQN's epsilon schedule
(``exploration_fraction``) is a fraction of ``--steps``, so it changes with the budget.
``--learning-starts`` (DQN only) replaces the zoo's ``learning_starts: 0``; purerl's DQN
needs a full batch in its buffer before it learns, so a like-for-like comparison passes the
same value (e.g. 1000) to both libraries.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

ENV_ID = "LunarLander-v3"
EVAL_SEED_BASE = 10_000

# rl-baselines3-zoo hyperparams/dqn.yml, LunarLander-v2 (zoo budget n_timesteps: 1e5).
DQN_ZOO = dict(
    learning_rate=6.3e-4,
    batch_size=128,
    buffer_size=50_000,
    learning_starts=0,
    gamma=0.99,
    target_update_interval=250,
    train_freq=4,
    gradient_steps=-1,
    exploration_fraction=0.12,
    exploration_final_eps=0.1,
    policy_kwargs=dict(net_arch=[256, 256]),
)
DQN_N_ENVS = 1

# rl-baselines3-zoo hyperparams/ppo.yml, LunarLander-v2 (zoo budget n_timesteps: 1e6).
# n_envs and n_steps can be overridden on the command line (--n-envs, --n-steps).
PPO_ZOO = dict(
    n_steps=1024,
    batch_size=64,
    gae_lambda=0.98,
    gamma=0.999,
    n_epochs=4,
    ent_coef=0.01,
)
PPO_N_ENVS = 16


def greedy_return(model, env: gym.Env, episodes: int) -> float:
    """Mean undiscounted return of ``episodes`` deterministic episodes, episode k seeded
    ``EVAL_SEED_BASE + k``."""
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + k)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


class PeriodicEval(BaseCallback):
    """Evaluates at the start of the first rollout at or past each multiple of ``every`` env
    steps (so after the preceding training), and at the end of training; keeps the seconds
    it spent so they can be taken out of the training time."""

    def __init__(self, every: int, episodes: int):
        super().__init__()
        self.every = every
        self.episodes = episodes
        self.env = gym.make(ENV_ID)
        self.next_at = every
        self.steps: list[int] = []
        self.returns: list[float] = []
        self.seconds = 0.0

    def _evaluate(self) -> None:
        start = time.perf_counter()
        self.steps.append(int(self.model.num_timesteps))
        self.returns.append(greedy_return(self.model, self.env, self.episodes))
        self.seconds += time.perf_counter() - start

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self.next_at:
            self._evaluate()
            while self.next_at <= self.model.num_timesteps:
                self.next_at += self.every

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        if not self.steps or self.steps[-1] != self.model.num_timesteps:
            self._evaluate()


def build(
    algo: str,
    seed: int,
    steps: int,
    n_envs: int | None,
    n_steps: int | None,
    learning_starts: int | None = None,
):
    """The SB3 model and the hyperparameters it was given (as JSON-able values)."""
    if algo == "dqn":
        if n_envs not in (None, DQN_N_ENVS) or n_steps is not None:
            raise SystemExit("--n-envs/--n-steps apply to PPO only (the zoo DQN uses 1 env)")
        dqn = {
            **DQN_ZOO,
            **({} if learning_starts is None else {"learning_starts": learning_starts}),
        }
        hyper = {"n_envs": DQN_N_ENVS, **dqn}
        env = make_vec_env(ENV_ID, n_envs=DQN_N_ENVS, seed=seed)
        model = DQN("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **dqn)
    else:
        if learning_starts is not None:
            raise SystemExit("--learning-starts applies to DQN only")
        ppo = {**PPO_ZOO, **({} if n_steps is None else {"n_steps": n_steps})}
        envs = PPO_N_ENVS if n_envs is None else n_envs
        if (envs * ppo["n_steps"]) % ppo["batch_size"]:
            raise SystemExit(
                f"n_envs * n_steps = {envs * ppo['n_steps']} is not a multiple of "
                f"batch_size={ppo['batch_size']}"
            )
        hyper = {"n_envs": envs, **ppo}
        env = make_vec_env(ENV_ID, n_envs=envs, seed=seed)
        model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **ppo)
    defaults = {"policy": "MlpPolicy", "total_timesteps_requested": steps}
    return model, {**defaults, **hyper}


def versions() -> dict:
    import Box2D

    return {
        "python": platform.python_version(),
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "box2d": Box2D.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=("dqn", "ppo"), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="env steps [dqn 1e5, ppo 1e6]")
    parser.add_argument("--eval-every", type=int, default=10_000, help="env steps [10000]")
    parser.add_argument("--eval-episodes", type=int, default=8)
    parser.add_argument("--n-envs", type=int, default=None, help="PPO only [16]")
    parser.add_argument("--n-steps", type=int, default=None, help="PPO rollout length [1024]")
    parser.add_argument("--learning-starts", type=int, default=None, help="DQN only [zoo: 0]")
    args = parser.parse_args(argv)
    steps = args.steps or (100_000 if args.algo == "dqn" else 1_000_000)
    if steps <= 0 or args.eval_every <= 0 or args.eval_episodes <= 0:
        raise SystemExit("--steps, --eval-every and --eval-episodes must be > 0")
    if args.learning_starts is not None and args.learning_starts < 0:
        raise SystemExit("--learning-starts must be >= 0")

    torch.set_num_threads(1)
    model, hyper = build(
        args.algo, args.seed, steps, args.n_envs, args.n_steps, args.learning_starts
    )
    callback = PeriodicEval(args.eval_every, args.eval_episodes)

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callback)
    learn_seconds = time.perf_counter() - start
    wall = learn_seconds - callback.seconds
    total = int(model.num_timesteps)

    row = {
        "library": "sb3",
        "algorithm": args.algo,
        "seed": args.seed,
        "total_steps": total,
        "wall_seconds": round(wall, 3),
        "env_steps_per_second": round(total / wall, 2),
        "eval_seconds": round(callback.seconds, 3),
        "eval_episodes": args.eval_episodes,
        "eval_steps": callback.steps,
        "eval_returns": [round(r, 3) for r in callback.returns],
        "hyperparameters": hyper,
        "versions": versions(),
    }
    sys.stdout.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
