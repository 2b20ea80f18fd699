import pytest

from urllm.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def synthetic():
    """A seeded two-domain dataset with latent tastes (see urllm.data.synthetic)."""
    return make_synthetic()
