"""Without brax (the optional ``purerl[brax]`` extra), ``brax:`` ids fail with one clear
message and nothing else changes. brax is hidden here even where it is installed, so this file
runs in CI (which does not install the extra) and everywhere else."""

from __future__ import annotations

import sys

import pytest

from purerl.envs import VecEnv, brax_env, check_env_id, make, registered

MESSAGE = "brax is not installed: pip install 'purerl\\[brax\\]'"


@pytest.fixture
def no_brax(monkeypatch):
    """Make ``import brax`` fail (a ``None`` entry in ``sys.modules`` raises ImportError)."""
    for name in [m for m in sys.modules if m == "brax" or m.startswith("brax.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "brax", None)
    monkeypatch.setitem(sys.modules, "brax.envs", None)
    brax_env._raw_env.cache_clear()
    yield
    brax_env._raw_env.cache_clear()


def test_make_says_how_to_install_brax(no_brax):
    with pytest.raises(ImportError, match=MESSAGE):
        make("brax:inverted_pendulum")
    with pytest.raises(ImportError, match=MESSAGE):
        VecEnv.make("brax:ant?max_steps_in_episode=500", num_envs=2)
    with pytest.raises(ImportError, match=MESSAGE):
        brax_env.BraxEnv("inverted_pendulum")
    # also a ValueError, so the ``purerl`` command reports it as bad input
    with pytest.raises(ValueError, match=MESSAGE):
        check_env_id("brax:inverted_pendulum")


def test_registered_lists_no_brax_ids_and_other_ids_still_work(no_brax):
    assert not brax_env.brax_available()
    ids = registered()
    assert "CartPole-v1" in ids and not any(i.startswith(brax_env.PREFIX) for i in ids)
    env, params = make("Pendulum-v1")
    assert env.name == "Pendulum-v1"
    with pytest.raises(ValueError, match="unknown environment id"):
        make("Pendulum-v2")


def test_cli_reports_missing_brax_in_one_line(no_brax, tmp_path, capsys):
    from purerl.cli import main

    argv = ["train", "sac", "--env", "brax:inverted_pendulum", "--steps", "100"]
    code = main([*argv, "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "brax is not installed: pip install 'purerl[brax]'" in err
    assert "Traceback" not in err
