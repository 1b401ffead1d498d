import os

import pytest

# Tests never touch the network (DESIGN §8).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STELLAR_OFFLINE", "1")


@pytest.fixture
def synthetic(tmp_path):
    """A 3-test-subject + 2-val-subject synthetic dataset (official layout)."""
    from stellar.testing import make_synthetic_dataset

    root = tmp_path / "STELLAR"
    make_synthetic_dataset(root, 3)
    make_synthetic_dataset(root, 2, first_id=200, seed=1)
    return root
