import os
import tempfile
from pathlib import Path

# A persistent XLA compilation cache shared by the two xdist workers and by the subprocesses the
# tests start (CLI, notebooks): many tests compile the same small training programs, so each is
# compiled once per session. Set before JAX reads its configuration (env vars are inherited).
_CACHE = Path(
    os.environ.get("PURERL_TEST_JAX_CACHE", Path(tempfile.gettempdir()) / "purerl-jax-cache")
)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Shape annotations are real in the test session: every function of purerl annotated with
# jaxtyping shapes/dtypes is checked by beartype at call time (outside jit and at trace time).
# The hook must be installed before anything imports purerl. PURERL_TEST_TYPECHECK=0 skips it
# (to time the suite without the checks); CI always runs with it.
if os.environ.get("PURERL_TEST_TYPECHECK", "1") != "0":
    from jaxtyping import install_import_hook

    install_import_hook("purerl", "beartype.beartype")

import jax  # noqa: E402
import pytest  # noqa: E402

# Catches the classic (B,) vs (B, 1) broadcast bug in TD targets.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
