"""SAC, TD3 and DDPG (a TD3 setting) as algorithms: config checks before compile, the probe
with a known optimal action, Pendulum learning, TD3's delayed actor, DDPG's one critic, the
CLI. Determinism, vmap == one by one, sweeps and bit-exact resume are the contract tests in
``test_core.py`` (every registered algorithm); the losses are in ``test_off_policy.py``."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.algorithms import continuous as cont
from purerl.algorithms import core, sac, td3

ALGOS = {"sac": sac, "td3": td3}


def _train(module, config, seeds, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    return jax.jit(jax.vmap(module.make_train(config)))(keys)


def _greedy_actions(name, states, obs):
    """Per seed, the greedy action in the env's units at each observation in ``obs``."""
    obs = jnp.asarray(obs, jnp.float32).reshape(-1, 1)

    def one(state):
        policy = core.get(name).greedy_policy(state)
        action, _, _ = policy.act(policy.params, jax.random.PRNGKey(0), obs, None, None)
        return action[:, 0]

    return np.asarray(jax.vmap(one)(states))


# ------------------------------------------------------------------ bad configs, before compile


@pytest.mark.parametrize("name", ALGOS)
def test_defaults_are_valid_and_documented(name):
    module = ALGOS[name]
    module.make_train(module.Config())
    for field in dataclasses.fields(module.Config):
        doc = (module.Config.__doc__ or "") + (cont.OffPolicyConfig.__doc__ or "")
        assert f"``{field.name}``" in doc, f"{name}.Config.{field.name} is not documented"


@pytest.mark.parametrize("name", ALGOS)
def test_discrete_env_is_refused_before_compile(name, monkeypatch):
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before checking"))
    with pytest.raises(ValueError, match="^env_id: CartPole-v1 has a discrete action space"):
        ALGOS[name].make_train(ALGOS[name].Config(env_id="CartPole-v1"))


@pytest.mark.parametrize("name", ALGOS)
@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5])
def test_tau_outside_unit_interval_is_refused(name, tau):
    with pytest.raises(ValueError, match="^tau: must be in \\(0, 1\\]"):
        ALGOS[name].Config(tau=tau)


@pytest.mark.parametrize("delay", [0, -2])
def test_non_positive_policy_delay_is_refused(delay):
    with pytest.raises(ValueError, match="^policy_delay: must be > 0"):
        td3.Config(policy_delay=delay)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 20_000, "^batch_size: .* larger than the replay capacity"),
        ("learning_starts", -1, "^learning_starts: must be >= 0"),
        ("max_grad_norm", 0.0, "^max_grad_norm: must be > 0"),
        ("num_critics", 0, "^num_critics:"),
    ],
)
def test_other_bad_fields_name_themselves(field, value, message):
    with pytest.raises(ValueError, match=message):
        sac.Config(**{field: value})


def test_sac_bad_temperature_and_td3_negative_noise_are_refused():
    with pytest.raises(ValueError, match="^init_alpha: must be > 0"):
        sac.Config(init_alpha=0.0)
    with pytest.raises(ValueError, match="^exploration_noise: must be >= 0"):
        td3.Config(exploration_noise=-0.1)


def test_target_entropy_is_read_as_a_float_or_none():
    """Its default is ``None`` ("−action_dim"), so its type comes from the annotation: the
    command line's text is a float, ``none`` restores the default, anything else names it."""
    from purerl.experiment import make_config

    assert make_config("sac", overrides={"target_entropy": "-3"}).target_entropy == -3.0
    assert make_config("sac", overrides={"target_entropy": "none"}).target_entropy is None
    assert make_config("sac", overrides={"target_entropy": -0.5}).target_entropy == -0.5
    for bad in ("abc", "nan", True):
        with pytest.raises(ValueError, match="^target_entropy: "):
            make_config("sac", overrides={"target_entropy": bad})


def test_network_must_be_a_pair():
    with pytest.raises(ValueError, match="^network: SAC/TD3 take a pair"):
        sac.init(jax.random.PRNGKey(0), sac.quick_config(), network=object())


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("name", ALGOS)
def test_probe_greedy_action_is_optimal(name):
    """ContinuousTarget-probe: one step, obs s = ±1, reward −(a − s/2)², so the optimal
    action is ±0.5 (in an action box of [−2, 2]). A random or constant policy misses one of
    the two targets by ≥ 0.5; every seed must land within ±0.1 of both."""
    module = ALGOS[name]
    config = dataclasses.replace(
        module.quick_config(), total_steps=2_048, eval_every=1_024, learning_rate=3e-3
    )
    states, metrics = _train(module, config, seeds=2)
    actions = _greedy_actions(name, states, [-1.0, 1.0])
    np.testing.assert_allclose(actions, np.tile([-0.5, 0.5], (2, 1)), atol=0.1)
    # the greedy return is −(a − s/2)² per episode: near 0 once the action is right
    assert np.all(np.asarray(metrics["eval_return"])[:, -1] > -0.01)


# Pendulum-v1: random actions score ≈ −1,200 per 200-step episode and a policy that never
# swings the pole up ≈ −900 to −1,500; swinging up and balancing scores above −200. With
# the defaults (rejax's published Pendulum configs) these 4 seeds average −1,570 (SAC) and
# −1,760 (TD3) at the first evaluation and −210 (SAC, 2k steps) and −180 (TD3, 5k steps) at
# the last; the −400 threshold leaves room for seed noise (single evaluations swing ±200).
PENDULUM = {"sac": (2_000, -400.0), "td3": (5_000, -400.0)}


@pytest.mark.parametrize("name", ALGOS)
def test_pendulum_swings_up_on_four_seeds(name):
    steps, threshold = PENDULUM[name]
    module = ALGOS[name]
    config = module.Config(total_steps=steps, eval_every=steps // 4)
    _, metrics = _train(module, config, seeds=4)
    returns = np.asarray(metrics["eval_return"])
    assert returns[:, -1].mean() > threshold, returns


# ------------------------------------------------------------------ TD3 / DDPG specifics


def _filled_state(module, config):
    """A state whose buffer holds a batch of random transitions (no update made yet)."""
    config = dataclasses.replace(config, learning_starts=100 * config.batch_size)
    state = module.init(jax.random.PRNGKey(1), config)
    for _ in range(config.batch_size // config.num_envs):
        state, _ = jax.jit(module.step)(state)
    return state


def _same(a, b):
    leaves = zip(
        jax.tree.leaves(eqx.filter(a, eqx.is_array)),
        jax.tree.leaves(eqx.filter(b, eqx.is_array)),
        strict=True,
    )
    return all(np.array_equal(x, y) for x, y in leaves)


def test_td3_moves_actor_and_targets_every_policy_delay_updates():
    state = _filled_state(td3, dataclasses.replace(td3.quick_config(), policy_delay=3))
    update = jax.jit(td3._update)
    moved = []
    for i in range(6):
        new, _ = update(state, jax.random.PRNGKey(i))
        assert not _same(new.critic, state.critic)  # critics learn every update
        moved.append(
            (
                not _same(new.actor, state.actor),
                not _same(new.actor_target, state.actor_target),
                not _same(new.critic_target, state.critic_target),
            )
        )
        state = new
    # updates are counted from 0: the actor and every target move on updates 3 and 6
    expected = [(k % 3 == 2,) * 3 for k in range(6)]
    assert moved == expected, moved


def test_ddpg_is_td3_with_one_critic_no_smoothing_no_delay():
    config = td3.ddpg_config(**cont.quick_fields())
    assert (config.num_critics, config.policy_delay, config.policy_noise) == (1, 1, 0.0)
    states, metrics = _train(td3, dataclasses.replace(config, total_steps=1_024), seeds=1)
    q = jax.vmap(lambda c: jax.vmap(c)(jnp.zeros((2, 1)), jnp.zeros((2, 1))))(states.critic)
    assert q.shape == (1, 2, 1)  # one critic
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))


def test_sac_temperature_falls_while_the_policy_is_too_random():
    """Early on the policy's entropy is above −|A| = −1, so the automatic temperature must
    fall from its initial α = 1 (the temperature loss pushes log α down)."""
    config = dataclasses.replace(sac.quick_config(), total_steps=512)
    _, metrics = _train(sac, config, seeds=1)
    alpha = np.asarray(metrics["alpha"])[0]
    learning = np.asarray(metrics["learning"])[0].astype(bool)
    assert alpha[learning][-1] < alpha[learning][0] < 1.0


def test_cli_trains_sac_and_writes_the_summary(tmp_path, capsys):
    from purerl.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "sac",
            "--env",
            "ContinuousTarget-probe",
            "--steps",
            "300",
            "--seeds",
            "2",
            "--set",
            "learning_starts=64",
            "--set",
            "batch_size=32",
            "--set",
            "hidden_sizes=16",
            "--set",
            "eval_every=150",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code in (0, None)
    assert (out / "summary.json").exists()
    printed = capsys.readouterr().out
    assert "sac" in printed and "ContinuousTarget-probe" in printed


@pytest.mark.parametrize("name", ALGOS)
def test_mountain_car_continuous_runs_within_its_action_box(name):
    """gymnax ``MountainCarContinuous-v0`` (actions in [−1, 1], a 999-step time limit): a
    short run stays finite and its greedy actions stay in the box."""
    module = ALGOS[name]
    config = dataclasses.replace(
        module.quick_config(), env_id="MountainCarContinuous-v0", total_steps=256, eval_every=256
    )
    states, metrics = _train(module, config, seeds=1)
    for key in ("critic_loss", "eval_return"):
        assert np.all(np.isfinite(np.asarray(metrics[key]))), key
    obs = jnp.asarray([[-0.5, 0.0], [0.3, 0.05]], jnp.float32)

    def act(state):
        policy = core.get(name).greedy_policy(state)
        return policy.act(policy.params, jax.random.PRNGKey(0), obs, None, None)[0]

    actions = np.asarray(jax.vmap(act)(states))
    assert actions.shape == (1, 2, 1) and np.all(np.abs(actions) <= 1.0)
