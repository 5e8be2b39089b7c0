"""Atari through the actor–learner loop: DQN with the Nature CNN on ``atari:Breakout`` for a
short budget on this CPU machine — throughput, where the time goes, and whether learning has
started (not a full run: Mnih et al. (2015) train for 50M agent steps).

Four measurements, in this order, each in this process:

- ``random``: a uniformly random policy on the same env (``HostVecEnv``, 8 copies) until
  ``--random-episodes`` episodes have ended: the baseline a learning curve must rise above.
- ``acting``: env + jitted Nature-CNN forward only (the greedy policy of a fresh DQN network,
  the act function the actors run), 8 envs, ``--acting-steps`` steps: the ceiling for
  throughput when learning is free.
- ``learner``: the learner alone: ``--learner-iterations`` calls of the actor–learner loop's
  jitted learn step (``ActorLearner._learn``: store 8 transitions, 2 gradient steps of batch
  32 on the Nature CNN, target update) on synthetic frames, each waited for: the ceiling for
  throughput when acting is free.
- ``train``: ``purerl.run("dqn", ...)`` 1 seed for ``--steps`` agent steps (4 emulator frames
  each) with ``--actors`` actor threads. DQN settings adapted from the Nature DQN
  (Mnih et al., 2015, Extended Data Table 1): batch 32, one gradient step per 4 agent steps
  (8 envs, 2 updates per iteration), Adam at lr 1e-4 (the rl-baselines3-zoo Atari DQN rate;
  the paper used RMSProp 2.5e-4), γ 0.99, Huber loss, rewards clipped to their sign, target
  network copied every 1,000 agent steps (tau 1, every 125 iterations of 8 envs; the paper:
  every 10,000), Double DQN (purerl's default; the Nature paper is single DQN), no dueling
  head. Shortened for the budget: replay 50,000 (paper 1M), learning starts at 5,000 (paper
  50,000), ε 1 → 0.05 over the first 40% of the run (paper: 1 → 0.1 over 1M steps).
  Greedy evaluation of 4 episodes every ``--eval-every`` steps; episodes are capped at
  ``max_frames=27000`` (6,750 agent steps) because a greedy net that never presses FIRE
  never ends a Breakout episode (ALE's own cap is 108,000 frames).

Every return here is of the clipped reward (the env the learner trains on, ``clip_rewards=1``),
i.e. in Breakout the number of bricks hit, for the random baseline, the training episodes
(ε-greedy; the mean over the episodes that ended in each bin of ``--bin`` agent steps) and the
greedy evaluations alike.

    python benchmarks/atari.py                       # ~15 min on 2 cores
    python benchmarks/atari.py --steps 20000         # a quicker look

Results: ``results/atari.json`` and ``results/atari.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
from bench_common import machine

HERE = Path(__file__).resolve().parent
NUM_ENVS = 8

DQN = dict(
    num_envs=NUM_ENVS,
    updates_per_iteration=2,
    batch_size=32,
    buffer_size=50_000,
    learning_starts=5_000,
    learning_rate=1e-4,
    gamma=0.99,
    loss="huber",
    n_step=1,  # Nature DQN's 1-step targets, not purerl's default 5-step targets
    tau=1.0,
    target_update_period=125,
    double=True,
    dueling=False,
    network="nature_cnn",
    epsilon_start=1.0,
    epsilon_end=0.05,
    exploration_fraction=0.4,
    max_grad_norm=10.0,
    eval_envs=4,
)


def env_id(game: str) -> str:
    return f"atari:{game}?max_frames=27000&clip_rewards=1"


def random_baseline(game: str, episodes: int) -> dict:
    from purerl.envs import VecEnv
    from purerl.envs.host import HostVecEnv

    env = HostVecEnv(env_id(game), NUM_ENVS)
    rng = np.random.default_rng(0)
    env.reset(list(range(NUM_ENVS)))
    n_actions = VecEnv.make(env_id(game), 1).num_actions
    returns, steps, t0 = [], 0, time.perf_counter()
    while len(returns) < episodes:
        out = env.step(rng.integers(0, n_actions, NUM_ENVS))
        steps += NUM_ENVS
        done = out.terminated | out.truncated
        returns += out.episode_return[done].tolist()
    seconds = time.perf_counter() - t0
    env.close()
    return {
        "episodes": len(returns),
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "env_steps_per_s": steps / seconds,
    }


def acting(game: str, steps: int) -> dict:
    """Env stepping plus the jitted greedy Nature-CNN act, no learning."""
    import jax

    from purerl.algorithms import dqn
    from purerl.envs.host import HostVecEnv

    config = dqn.Config(env_id=env_id(game), **{**DQN, "eval_envs": 1})
    state = dqn.init(jax.random.PRNGKey(0), config)
    policy = dqn.ALGORITHM.greedy_policy(state)
    act = jax.jit(lambda p, k, o: policy.act(p, k, o, None, None)[0])
    env = HostVecEnv(config.env_id, NUM_ENVS)
    obs = env.reset(list(range(NUM_ENVS)))
    key = jax.random.PRNGKey(1)
    np.asarray(act(policy.params, key, obs))  # compile
    t0 = time.perf_counter()
    act_s = 0.0
    for _ in range(steps // NUM_ENVS):
        t = time.perf_counter()
        action = np.asarray(act(policy.params, key, obs))
        act_s += time.perf_counter() - t
        obs = env.step(action).obs
    seconds = time.perf_counter() - t0
    env.close()
    return {
        "env_steps": steps,
        "env_steps_per_s": steps / seconds,
        "act_seconds": act_s,
        "env_seconds": seconds - act_s,
    }


def learner(game: str, iterations: int) -> dict:
    """Seconds per learner iteration (one iteration = ``NUM_ENVS`` agent steps)."""
    import jax
    import jax.numpy as jnp

    from purerl.algorithms import dqn
    from purerl.algorithms.rollout import Rollout
    from purerl.experiment.actor_learner import ActorLearner, HostSettings, learner_input

    config = dqn.Config(
        env_id=env_id(game),
        **{**DQN, "learning_starts": 64, "eval_every": 10_000},
        total_steps=10_000,
    )
    loop = ActorLearner(dqn.ALGORITHM, config, HostSettings(), runs=1)
    agent = jax.tree.map(lambda x: jnp.asarray(x)[None], dqn.init(jax.random.PRNGKey(0), config))
    diverged, frozen = jnp.full((1,), -1, jnp.int32), jnp.zeros((1,), jnp.int32)
    rng = np.random.default_rng(0)
    shape = (1, NUM_ENVS)  # one step of every env
    frames = rng.integers(0, 256, (*shape, 84, 84, 4), dtype=np.uint8)
    no = np.zeros(shape, bool)
    rollout = Rollout(
        obs=frames,
        action=rng.integers(0, 4, shape).astype(np.int32),
        reward=rng.integers(0, 2, shape).astype(np.float32),
        terminated=no,
        truncated=no,
        next_obs=frames,
        extras={},
        first=no,
    )
    data = learner_input(rollout, np.zeros(shape, np.float32), np.ones(shape, np.int32))
    times = []
    for _ in range(iterations + 10):  # 10 warm-up calls (compile, buffer filling to a batch)
        t0 = time.perf_counter()
        (agent, diverged), metrics = loop._learn(agent, diverged, frozen, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[10:]))
    return {
        "iterations": iterations,
        "seconds_per_iteration_median": per,
        "agent_steps_per_s_ceiling": NUM_ENVS / per,
    }


def train(game: str, steps: int, actors: int, eval_every: int) -> dict:
    import purerl

    t0 = time.perf_counter()
    r = purerl.run(
        "dqn",
        env_id(game),
        seeds=1,
        steps=steps,
        overrides={**DQN, "eval_every": eval_every},
        actors=actors,
        out=None,
        compile_cache=False,
    )
    wall = time.perf_counter() - t0
    s, m = r.summary, r.metrics
    count = np.asarray(m["episode_count"])[0, 0]
    ret = np.asarray(m["episode_return"])[0, 0]
    at = np.asarray(m["env_steps"])[0, 0]
    return {
        "wall_s": wall,
        "compile_s": s["compile_seconds"],
        "train_s": s["train_seconds"],
        "env_steps": int(s["env_steps_per_seed"]),
        "env_steps_per_s": s["env_steps_per_seed"] / s["train_seconds"],
        "env_steps_per_s_excl_eval": s["env_steps_per_seed"]
        / (s["train_seconds"] - s["host"]["eval_seconds"]),
        "host": s["host"],
        "eval_steps": np.asarray(m["eval_env_steps"])[0, 0].tolist(),
        "eval_return": np.asarray(m["eval_return"])[0, 0].tolist(),
        # per iteration: the mean clipped return of the episodes that ended, and how many
        "iter_env_steps": at.tolist(),
        "iter_episode_count": count.tolist(),
        "iter_episode_return": ret.tolist(),
        "diverged": s["diverged"],
    }


def binned(run: dict, width: int) -> tuple[list[int], list[float], list[int]]:
    """Mean return of the training episodes that ended in each bin of ``width`` steps."""
    at = np.asarray(run["iter_env_steps"])
    count = np.asarray(run["iter_episode_count"], float)
    ret = np.asarray(run["iter_episode_return"])
    edges = np.arange(0, at.max() + width, width)
    ends, means, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (at > lo) & (at <= hi) & (count > 0)
        n = count[sel].sum()
        ends.append(int(hi))
        counts.append(int(n))
        means.append(float((ret[sel] * count[sel]).sum() / n) if n else float("nan"))
    return ends, means, counts


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run, base = result["train"], result["random"]
    ends, means, _ = binned(run, result["bin"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(ends, means, marker="o", label="training episodes (ε-greedy)")
    ax.plot(run["eval_steps"], run["eval_return"], marker="s", label="greedy evaluation")
    ax.axhline(base["mean"], color="grey", ls="--", label=f"random policy ({base['mean']:.1f})")
    ax.set_xlabel("agent steps (×4 frames)")
    ax.set_ylabel("episode return (clipped: bricks hit)")
    ax.set_title(
        f"DQN, Nature CNN, {result['game']}: {run['env_steps_per_s']:.0f} agent steps/s "
        f"on {result['cores']} CPU cores",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="Breakout")
    p.add_argument("--steps", type=int, default=60_000, help="agent steps of the DQN run")
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--eval-every", type=int, default=20_000)
    p.add_argument("--bin", type=int, default=5_000, help="training-curve bin (agent steps)")
    p.add_argument("--random-episodes", type=int, default=32)
    p.add_argument("--acting-steps", type=int, default=4_000)
    p.add_argument("--learner-iterations", type=int, default=100)
    p.add_argument("--out", default=str(HERE / "results" / "atari.json"))
    a = p.parse_args()
    import os

    result = {
        "machine": machine(),
        "cores": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
        "game": a.game,
        "config": DQN,
        "bin": a.bin,
    }
    result["random"] = random_baseline(a.game, a.random_episodes)
    print("random:", json.dumps(result["random"]), flush=True)
    result["acting"] = acting(a.game, a.acting_steps)
    print("acting:", json.dumps(result["acting"]), flush=True)
    result["learner"] = learner(a.game, a.learner_iterations)
    print("learner:", json.dumps(result["learner"]), flush=True)
    result["train"] = train(a.game, a.steps, a.actors, a.eval_every)
    run = result["train"]
    ends, means, counts = binned(run, a.bin)
    result["train_curve"] = {"end_steps": ends, "mean_return": means, "episodes": counts}
    print(
        f"train: {run['env_steps_per_s']:.0f} agent steps/s ({run['env_steps_per_s_excl_eval']:.0f}"
        f" without evaluation), compile {run['compile_s']:.1f} s, host {run['host']}",
        flush=True,
    )
    for e, m_, n in zip(ends, means, counts, strict=True):
        print(f"  steps ≤ {e:>6}: {n:>3} episodes, mean return {m_:.2f}")
    print("  greedy evaluations:", list(zip(run["eval_steps"], run["eval_return"], strict=True)))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print("wrote", out, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
