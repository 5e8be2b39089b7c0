"""AlphaZero (issue #15): Connect Four strength and self-play throughput.

Two parts, seeds vmapped and sharded over the XLA host devices (default 2 on the 2-core CPU):

- ``connect4``: AlphaZero trained on ConnectFour-v0 for ``--seeds`` seeds; the learning
  curve is the score against plain MCTS (random playouts, ``CURVE_SIMS`` simulations) during
  training; at the end each seed plays ``--games`` games (moving first in half) against the
  random player and against plain MCTS at two budgets (``MCTS_BUDGETS``). Win/draw/loss
  rates per opponent (mean over seeds with the per-seed range), training time, self-play
  games/s.
- ``tictactoe``: the default Tic-Tac-Toe config at self-play Gumbel noise ``gumbel_scale``
  1 (the paper's) and 3 (purerl's default): per seed, games lost to the random player and the
  share of draws or wins against the perfect player, ``--games`` games each.
- ``references``: the default Tic-Tac-Toe search with an untrained network against the
  perfect player (what training adds), and plain MCTS's root selection: how often PUCT and
  Gumbel (``search.mcts_opponent``) block a Connect Four column threat, 32 searches each.
- ``throughput``: self-play moves/s with search (``num_simulations`` 32, Gumbel, a fresh
  network: the work does not depend on the weights) at 1 / 8 / 64 parallel games, on
  Tic-Tac-Toe and Connect Four, one device; the games' moves (not the padding slots after a
  game ended) per second.

    python benchmarks/alphazero.py                       # both, into results/alphazero.json
    python benchmarks/alphazero.py --parts throughput

Connect Four config: ``alphazero.Config`` defaults except the ones in ``C4`` below (a CNN of
32 channels rather than the default 64, to keep the run short on a CPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
C4 = dict(
    env_id="ConnectFour-v0",
    num_envs=64,
    num_simulations=32,
    width=32,
    buffer_size=50_000,
    eval_envs=64,
    eval_opponent="mcts",
)
CURVE_SIMS = 32
MCTS_BUDGETS = (32, 128)


def _scores(states, config, opponent: str, sims: int, games: int, key) -> list[list[float]]:
    """Per seed, the score of each of ``games`` games against ``opponent``."""
    import dataclasses

    import jax
    import numpy as np

    from purerl.algorithms import alphazero, core

    cfg = dataclasses.replace(config, eval_opponent=opponent, opponent_simulations=sims)
    env = alphazero.make_env(cfg, games)

    def play(state):
        return core.episode_returns(key, env, alphazero.greedy_policy(state))

    return np.asarray(jax.jit(jax.vmap(play))(states)).tolist()


def connect4(seeds: int, iterations: int, games: int) -> dict:
    import jax
    from bench_common import sharded_keys, time_train_with_state

    from purerl.algorithms import alphazero

    slots = C4["num_envs"] * 42
    config = alphazero.Config(
        **C4,
        total_steps=iterations * slots,
        eval_every=max(1, iterations // 8) * slots,
        opponent_simulations=CURVE_SIMS,
    )
    keys, sharding = sharded_keys(seeds)
    states, metrics, compile_s, train_s = time_train_with_state(
        alphazero.make_train(config), keys, sharding
    )
    finals = {}
    for name, sims in [("random", 0), *[(f"mcts{s}", s) for s in MCTS_BUDGETS]]:
        t = time.perf_counter()
        opponent = "random" if sims == 0 else "mcts"
        finals[name] = _scores(states, config, opponent, max(sims, 1), games, jax.random.PRNGKey(7))
        print(f"  final vs {name}: {time.perf_counter() - t:.0f} s", flush=True)
    return {
        "part": "connect4",
        "config": {**C4, "iterations": iterations, "total_steps": config.total_steps},
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "compile_s": compile_s,
        "train_s": train_s,
        "games_per_s": seeds * iterations * C4["num_envs"] / train_s,
        "curve": metrics["eval_return"].tolist(),
        "curve_steps": metrics["eval_env_steps"][0].tolist(),
        "curve_opponent": f"mcts{CURVE_SIMS}",
        "game_length": metrics["game_length"][:, -1].tolist(),
        "finals": finals,
    }


def tictactoe(seeds: int, scales: list[float], games: int) -> list[dict]:
    """The default Tic-Tac-Toe config at each self-play ``gumbel_scale``: per seed, losses to
    the random player and the share of draws or wins against the perfect player."""
    import dataclasses

    import jax
    import numpy as np
    from bench_common import sharded_keys, time_train_with_state

    from purerl.algorithms import alphazero

    rows = []
    for scale in scales:
        config = dataclasses.replace(alphazero.Config(), gumbel_scale=scale)
        keys, sharding = sharded_keys(seeds)
        states, _, compile_s, train_s = time_train_with_state(
            alphazero.make_train(config), keys, sharding
        )
        vs_random = np.asarray(_scores(states, config, "random", 1, games, jax.random.PRNGKey(10)))
        vs_perfect = np.asarray(
            _scores(states, config, "perfect", 1, games, jax.random.PRNGKey(11))
        )
        rows.append(
            {
                "part": "tictactoe",
                "gumbel_scale": scale,
                "seeds": seeds,
                "games": games,
                "compile_s": compile_s,
                "train_s": train_s,
                "losses_vs_random": (vs_random == -1).sum(1).tolist(),
                "hold_vs_perfect": (vs_perfect >= 0).mean(1).tolist(),
            }
        )
        r = rows[-1]
        print(f"  gumbel_scale {scale}: {r['losses_vs_random']} {r['hold_vs_perfect']}", flush=True)
    return rows


# Connect Four, x to move: o has three stacked in column 0, only column 0 does not lose at once
BLOCK = [".......", ".......", ".......", "o......", "o......", "ox.x..."]


def references(seeds: int, games: int, searches: int) -> list[dict]:
    """Two reference points: the default search with an UNtrained network (what training
    adds), and plain MCTS's root selection (how often PUCT and Gumbel block ``BLOCK``)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from purerl import search
    from purerl.algorithms import alphazero
    from purerl.envs import games as boards

    config = alphazero.Config()
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    fresh = jax.vmap(lambda k: alphazero.init(k, config))(keys)
    vs_perfect = np.asarray(_scores(fresh, config, "perfect", 1, games, jax.random.PRNGKey(11)))
    rows = [
        {
            "part": "untrained",
            "seeds": seeds,
            "games": games,
            "hold_vs_perfect": (vs_perfect >= 0).mean(1).tolist(),
        }
    ]
    game = boards.CONNECT_FOUR
    cells = [{"x": 1, "o": -1, ".": 0}[ch] for row in BLOCK for ch in row]
    board = jnp.broadcast_to(jnp.asarray(cells, jnp.int8), (searches, 42))
    for kind in search.SEARCH_KINDS:
        for sims in (32, 64, 128):
            opponent = jax.jit(jax.vmap(search.mcts_opponent(game, sims, kind=kind)))
            moves = np.asarray(opponent(jax.random.split(jax.random.PRNGKey(3), searches), board))
            rows.append(
                {
                    "part": "plain_mcts",
                    "kind": kind,
                    "simulations": sims,
                    "searches": searches,
                    "blocked": int(np.sum(moves == 0)),
                }
            )
    print(f"  untrained vs perfect: {rows[0]['hold_vs_perfect']}", flush=True)
    return rows


def throughput(parallel: list[int]) -> list[dict]:
    import jax
    import numpy as np

    from purerl.algorithms import alphazero

    rows = []
    for env_id, extra in (("TicTacToe-v0", {}), ("ConnectFour-v0", {"width": 32})):
        for n in parallel:
            config = alphazero.Config(
                env_id=env_id, num_envs=n, num_simulations=32, buffer_size=50_000, **extra
            )
            state = alphazero.init(jax.random.PRNGKey(0), config)
            play = jax.jit(alphazero.self_play)
            t = time.perf_counter()
            jax.block_until_ready(play(state, jax.random.PRNGKey(1)))
            compile_s = time.perf_counter() - t
            repeats = max(2, 64 // n)
            t = time.perf_counter()
            moves = 0.0
            for i in range(repeats):
                _, valid, _ = play(state, jax.random.PRNGKey(2 + i))
                moves += float(np.sum(valid))
            seconds = time.perf_counter() - t
            rows.append(
                {
                    "part": "throughput",
                    "env": env_id,
                    "parallel_games": n,
                    "simulations": 32,
                    "compile_s": compile_s,
                    "moves_per_s": moves / seconds,
                    "games_per_s": repeats * n / seconds,
                }
            )
            r = rows[-1]
            print(f"  {env_id} {n} games: {r['moves_per_s']:,.0f} moves/s", flush=True)
    return rows


def _rates(scores: list[list[float]]) -> str:
    import numpy as np

    s = np.asarray(scores)
    win, draw, loss = ((s == v).mean(1) for v in (1, 0, -1))
    return (
        f"{win.mean():.0%} / {draw.mean():.0%} / {loss.mean():.0%} "
        f"(wins per seed {win.min():.0%}–{win.max():.0%})"
    )


def tables(rows: list[dict]) -> str:
    out = []
    for r in (r for r in rows if r["part"] == "connect4"):
        out += [
            f"Connect Four, {r['seeds']} seeds, {r['config']['iterations']} iterations of "
            f"{r['config']['num_envs']} self-play games ({r['config']['num_simulations']} "
            f"simulations, CNN width {r['config']['width']}); compile {r['compile_s']:.0f} s, "
            f"training {r['train_s']:.0f} s on {r['devices']} devices, "
            f"{r['games_per_s']:.1f} self-play games/s.",
            "",
            "| opponent | games per seed | win / draw / loss (mean over seeds) |",
            "|---|---:|---|",
        ]
        for name, scores in r["finals"].items():
            label = "random" if name == "random" else f"plain MCTS, {name[4:]} simulations"
            out.append(f"| {label} | {len(scores[0])} | {_rates(scores)} |")
        out.append("")
    ttt = [r for r in rows if r["part"] == "tictactoe"]
    if ttt:
        out += [
            "| self-play gumbel_scale | seeds | seeds that never lose to random | losses to "
            "random per seed | draws or wins vs perfect per seed (min) |",
            "|---:|---:|---:|---|---:|",
        ]
        for r in ttt:
            clean = sum(n == 0 for n in r["losses_vs_random"])
            out.append(
                f"| {r['gumbel_scale']} | {r['seeds']} | {clean} | {r['losses_vs_random']} "
                f"| {min(r['hold_vs_perfect']):.0%} |"
            )
        out.append("")
    for r in (r for r in rows if r["part"] == "untrained"):
        hold = r["hold_vs_perfect"]
        out += [
            f"Untrained network, default search, {r['seeds']} seeds × {r['games']} games vs "
            f"perfect: draws {min(hold):.0%}–{max(hold):.0%} (mean {sum(hold) / len(hold):.0%}).",
            "",
        ]
    mcts = [r for r in rows if r["part"] == "plain_mcts"]
    if mcts:
        out += [
            "| plain MCTS root selection | simulations | blocks the threat |",
            "|---|---:|---:|",
        ]
        for r in mcts:
            out.append(f"| {r['kind']} | {r['simulations']} | {r['blocked']} of {r['searches']} |")
        out.append("")
    speed = [r for r in rows if r["part"] == "throughput"]
    if speed:
        out += [
            "| game | parallel games | moves/s (32 simulations each) | games/s |",
            "|---|---:|---:|---:|",
        ]
        for r in speed:
            out.append(
                f"| {r['env']} | {r['parallel_games']} | {r['moves_per_s']:,.0f} "
                f"| {r['games_per_s']:,.1f} |"
            )
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    c4 = [r for r in rows if r["part"] == "connect4"]
    speed = [r for r in rows if r["part"] == "throughput"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for r in c4:
        curve = np.asarray(r["curve"])
        x = np.asarray(r["curve_steps"]) / (42 * r["config"]["num_envs"])
        for seed_curve in curve:
            axes[0].plot(x, seed_curve, color="C0", alpha=0.3)
        axes[0].plot(x, curve.mean(0), color="C0", lw=2, label=f"mean of {r['seeds']} seeds")
    axes[0].axhline(0, color="grey", ls=":")
    axes[0].set(
        xlabel="training iteration (64 self-play games each)",
        ylabel=f"score vs plain MCTS ({CURVE_SIMS} sims), 64 games",
        title="AlphaZero on Connect Four",
        ylim=(-1.05, 1.05),
    )
    axes[0].legend()
    for env in sorted({r["env"] for r in speed}):
        pts = sorted((r["parallel_games"], r["moves_per_s"]) for r in speed if r["env"] == env)
        axes[1].plot(*zip(*pts, strict=True), "o-", label=env)
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="parallel self-play games",
        ylabel="moves/s with 32-simulation search",
        title="Self-play throughput (1 device)",
    )
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--parts", nargs="+", default=["throughput", "references", "tictactoe", "connect4"]
    )
    p.add_argument("--ttt-seeds", type=int, default=8, help="Tic-Tac-Toe seeds per scale")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--seeds", type=int, default=4, help="Connect Four seeds")
    p.add_argument("--iterations", type=int, default=160, help="Connect Four iterations")
    p.add_argument("--games", type=int, default=256, help="final games per seed and opponent")
    p.add_argument("--parallel", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--devices", type=int, default=2, help="XLA host devices (seeds sharded)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "alphazero.json")
    args = p.parse_args()
    flags = os.environ.get("XLA_FLAGS", "")
    if "device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={args.devices}"
    from bench_common import save_rows

    rows = []
    if "throughput" in args.parts:
        rows += throughput(args.parallel)
    if "references" in args.parts:
        rows += references(args.ttt_seeds, args.games, 32)
    if "tictactoe" in args.parts:
        rows += tictactoe(args.ttt_seeds, args.scales, args.games)
    if "connect4" in args.parts:
        rows.append(connect4(args.seeds, args.iterations, args.games))
    rows = save_rows(args.json, rows, key=lambda r: r["part"])
    plot(rows, args.json.with_suffix(".png"))
    print(tables(rows))


if __name__ == "__main__":
    main()
