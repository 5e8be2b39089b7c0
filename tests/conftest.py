import jax
import pytest

# Catches the classic (B,) vs (B, 1) broadcast bug in TD targets.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
