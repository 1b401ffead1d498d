import os
import tempfile
from pathlib import Path

import pytest

# Tests never touch the network (DESIGN §8).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("STELLAR_OFFLINE", "1")

# The user's cache is where the demo photos' sdist download is kept between runs ...
USER_DOWNLOADS = Path(os.environ.get("STELLAR_HOME") or "~/.cache/stellar").expanduser() / "downloads"
# ... but models and features are cached in a fresh folder per session, so no test can pass on a
# stale feature computed by older code. STELLAR_TEST_USE_HOME=1 keeps the user's $STELLAR_HOME
# (to run the `slow` real-weight checks against weights cached there).
if os.environ.get("STELLAR_TEST_USE_HOME") != "1":
    _home = Path(tempfile.mkdtemp(prefix="stellar-test-home-"))
    USER_DOWNLOADS.mkdir(parents=True, exist_ok=True)
    (_home / "downloads").symlink_to(USER_DOWNLOADS, target_is_directory=True)
    os.environ["STELLAR_HOME"] = str(_home)


@pytest.fixture
def synthetic(tmp_path):
    """A 3-test-subject + 2-val-subject synthetic dataset (official layout)."""
    from stellar.testing import make_synthetic_dataset

    root = tmp_path / "STELLAR"
    make_synthetic_dataset(root, 3)
    make_synthetic_dataset(root, 2, first_id=200, seed=1)
    return root


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    """The real-photo demo dataset (``stellar.data.samples``): 6 identities, 8 photos, built once per session.

    Subject -> person / licence / source: ``stellar.data.samples.demo_identities()``; per-photo
    face counts, head ellipses and APS labels: ``stellar.data.samples.DEMO_PHOTOS``. The
    face_recognition sdist (Obama, Biden) is fetched once with pip into ``$STELLAR_HOME/downloads``
    when it is not cached there yet (the only network access of the suite, a PyPI download like
    any dependency); without network the dependent tests are skipped with the fetch command.
    """
    from stellar.data.samples import DownloadError, DownloadHashError, materialize_demo_dataset

    root = tmp_path_factory.mktemp("demo") / "STELLAR"
    try:
        return materialize_demo_dataset(root, progress=False, offline=False, cache_dir=USER_DOWNLOADS)
    except DownloadHashError:
        raise
    except DownloadError as exc:
        pytest.skip(f"face_recognition sdist unavailable: {exc}")
