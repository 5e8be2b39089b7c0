"""RLHF in miniature (issue #17): the hidden-score-vs-KL frontier and the wall time of each stage.

Two parts, ``--seeds`` seeds (default 8) vmapped and sharded over the XLA host devices (one per
core):

- ``stages``: wall time of each stage of ``rlhf.Config()`` (compile and run apart): pretraining,
  preference collection, the reward model, the reward normalisation inside ``init``, and the
  100 PPO iterations, for 1 seed and for ``--seeds`` seeds.
- ``frontier``: the same pretrained models and reward models (``rlhf.init``, once per seed),
  then PPO for each β in ``BETAS`` (β = 0: no leash) and with the adaptive controller, and
  best-of-n sampling from the pretrained model for n in ``BEST_OF``. For each point: the
  hidden raters' score of 1,024 fresh samples per seed, the KL to the pretrained model per
  sequence (exact over the vocabulary along those samples; for best-of-n the bound
  ``log n − (n − 1)/n``), the reward model's normalised score; means over seeds with 95%
  bootstrap CIs (``purerl.stats``). Plus the per-iteration curves of each PPO run.

    python benchmarks/rlhf.py                      # both parts, into results/rlhf.json / .png
    python benchmarks/rlhf.py --parts frontier --seeds 8
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BETAS = (0.0, 0.01, 0.05, 0.2)
ADAPTIVE = dict(kl_controller="adaptive", beta=0.05, kl_target=4.0)
BEST_OF = (1, 4, 16)
SAMPLES = 1024


def _timed(fn, *args):
    """Compile ``fn`` for ``args`` and run it once: ``(out, compile s, run s)``."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, t1 - t0, time.perf_counter() - t1


def stages(seeds: int) -> list[dict]:
    """Compile and run seconds of every stage, for 1 and ``seeds`` vmapped seeds."""
    import jax
    from bench_common import sharded_keys

    from purerl.algorithms import rlhf
    from purerl.language import CausalTransformer

    c = rlhf.Config()
    iterations = c.total_steps // (c.num_envs * c.length)

    def lm_of(k):
        return CausalTransformer(
            c.vocab_size, c.length + 1, width=c.width, depth=c.depth, heads=c.heads, key=k
        )

    def ppo(state):
        return jax.lax.scan(lambda s, _: rlhf.step(s), state, None, length=iterations)

    rows = []
    for n in sorted({1, seeds}):
        keys, _ = sharded_keys(n)
        lm, *t_pre = _timed(jax.vmap(lambda k: rlhf.pretrain(k, c, lm_of(k))[0]), keys)
        prefs, *t_pref = _timed(jax.vmap(lambda k, m: rlhf.collect_preferences(k, c, m)), keys, lm)
        _, *t_rm = _timed(
            jax.vmap(lambda k, m, p: rlhf.fit_reward_model(k, c, m, p)[0]), keys, lm, prefs
        )
        state, *t_init = _timed(jax.vmap(lambda k: rlhf.init(k, c)), keys)
        _, *t_ppo = _timed(jax.vmap(ppo), state)
        for stage, (comp, run) in (
            ("pretrain", t_pre),
            ("preferences", t_pref),
            ("reward model", t_rm),
            ("init (all three + normalisation)", t_init),
            (f"PPO ({iterations} iterations)", t_ppo),
        ):
            rows.append(dict(part="stages", seeds=n, stage=stage, compile_s=comp, run_s=run))
            print(f"{n} seed(s)  {stage:<36} compile {comp:6.1f} s  run {run:6.1f} s", flush=True)
    return rows


def _final(state, key):
    """Hidden score, KL per sequence and normalised reward-model score of fresh samples."""
    import jax
    import jax.numpy as jnp

    from purerl.algorithms import rlhf
    from purerl.envs import text
    from purerl.language import score_tokens
    from purerl.preferences import token_kl

    c = state.config
    tokens = rlhf.generate(state.policy, key, SAMPLES, c.length)
    _, logits, _ = jax.vmap(score_tokens, (None, 0))(state.policy, tokens)
    _, ref_logits, _ = jax.vmap(score_tokens, (None, 0))(state.reference, tokens)
    rm = jax.vmap(lambda t: state.reward_model(t)[1][-1])(tokens)
    return {
        "hidden_score": jnp.mean(text.hidden_score(rlhf.task_of(c), tokens)),
        "kl": jnp.mean(jnp.sum(token_kl(logits, ref_logits), axis=-1)),
        "reward": jnp.mean((rm - state.reward_mean) / state.reward_std),
    }


def _best_of(state, key, n):
    import jax
    import jax.numpy as jnp

    from purerl.algorithms import rlhf
    from purerl.envs import text

    c = state.config
    tokens = rlhf.best_of_n(key, state.reference, state.reward_model, n, SAMPLES, c.length)
    rm = jax.vmap(lambda t: state.reward_model(t)[1][-1])(tokens)
    return {
        "hidden_score": jnp.mean(text.hidden_score(rlhf.task_of(c), tokens)),
        "reward": jnp.mean((rm - state.reward_mean) / state.reward_std),
    }


def _summary(values) -> dict:
    import numpy as np

    from purerl import stats

    values = np.asarray(values, np.float64)
    low, high = stats.bootstrap_ci(values, stats.mean)
    return {
        "mean": float(values.mean()),
        "ci_low": low,
        "ci_high": high,
        "per_seed": values.tolist(),
    }


def frontier(seeds: int) -> list[dict]:
    """PPO at each β and adaptive, best-of-n: the frontier points and the PPO curves."""
    import dataclasses

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_common import sharded_keys

    from purerl.algorithms import rlhf
    from purerl.preferences import best_of_n_kl

    c = rlhf.Config()
    iterations = c.total_steps // (c.num_envs * c.length)
    keys, _ = sharded_keys(seeds)
    t0 = time.perf_counter()
    start = jax.jit(jax.vmap(lambda k: rlhf.init(k, c)))(keys)
    print(f"init of {seeds} seeds: {time.perf_counter() - t0:.1f} s", flush=True)
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)

    def ppo(state, beta, config):
        state = eqx.tree_at(lambda s: (s.beta, s.config), state, (beta, config))
        state, m = jax.lax.scan(lambda s, _: rlhf.step(s), state, None, length=iterations)
        return state, {k: m[k] for k in ("reward", "kl", "hidden_score", "beta")}

    rows = []
    settings = [(f"PPO β={b:g}", b, c) for b in BETAS]
    settings.append(
        ("PPO adaptive β (KL target 4)", ADAPTIVE["beta"], dataclasses.replace(c, **ADAPTIVE))
    )
    for name, beta, config in settings:
        run = jax.jit(jax.vmap(lambda s, b, config=config: ppo(s, b, config)))
        t0 = time.perf_counter()
        final, curves = run(start, jnp.full((seeds,), beta, jnp.float32))
        out = jax.jit(jax.vmap(_final))(final, eval_keys)
        seconds = time.perf_counter() - t0
        row = {"part": "frontier", "method": name, "seconds": seconds}
        row |= {k: _summary(v) for k, v in out.items()}
        row["curves"] = {k: np.asarray(v).mean(axis=0).tolist() for k, v in curves.items()}
        rows.append(row)
        print(
            f"{name:<30} hidden {row['hidden_score']['mean']:.3f}  KL {row['kl']['mean']:.2f}  "
            f"RM {row['reward']['mean']:.2f}  ({seconds:.0f} s)",
            flush=True,
        )
    for n in BEST_OF:
        out = jax.jit(jax.vmap(lambda s, k, n=n: _best_of(s, k, n)))(start, eval_keys)
        row = {"part": "frontier", "method": f"best-of-{n}"}
        row |= {k: _summary(v) for k, v in out.items()}
        bound = float(best_of_n_kl(n))
        row["kl"] = {"mean": bound, "ci_low": bound, "ci_high": bound, "bound": True}
        rows.append(row)
        print(
            f"best-of-{n:<21} hidden {row['hidden_score']['mean']:.3f}  KL ≤ {bound:.2f}  "
            f"RM {row['reward']['mean']:.2f}",
            flush=True,
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from purerl.algorithms import rlhf
    from purerl.envs import text

    best = text.best_grammatical_score(rlhf.task_of(rlhf.Config()))
    points = [r for r in rows if r["part"] == "frontier"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for r in points:
        h, kl = r["hidden_score"], r["kl"]
        marker = "s" if r["method"].startswith("best") else "o"
        yerr = [[h["mean"] - h["ci_low"]], [h["ci_high"] - h["mean"]]]
        xerr = [[kl["mean"] - kl["ci_low"]], [kl["ci_high"] - kl["mean"]]]
        ax.errorbar(
            kl["mean"], h["mean"], yerr=yerr, xerr=xerr, fmt=marker, capsize=3, label=r["method"]
        )
    ax.axhline(best, color="grey", ls="--", lw=1, label="best grammatical text")
    ax.set(
        xlabel="KL(π ‖ π_pretrained) per sequence (nats; best-of-n: bound)",
        ylabel="hidden score",
        title="hidden score vs KL (mean over seeds, 95% CI)",
    )
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=-0.2)
    ax.legend(fontsize=7)
    for ax, key, title in (
        (axes[1], "hidden_score", "hidden score of PPO's samples"),
        (axes[2], "reward", "reward-model score (normalised)"),
    ):
        for r in points:
            if "curves" in r:
                ax.plot(r["curves"][key], label=r["method"])
        ax.set(xlabel="PPO iteration", title=title)
        ax.legend(fontsize=7)
    axes[1].axhline(best, color="grey", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="stages,frontier")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count()}")
    import sys

    sys.path.insert(0, str(HERE))
    from bench_common import save_rows

    rows = []
    parts = args.parts.split(",")
    if "stages" in parts:
        rows += stages(args.seeds)
    if "frontier" in parts:
        rows += frontier(args.seeds)
    out = HERE / "results" / "rlhf.json"
    rows = save_rows(
        out, rows, key=lambda r: (r["part"], r.get("seeds"), r.get("stage"), r.get("method"))
    )
    plot(rows, out.with_suffix(".png"))
    print(f"written {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
