"""Issue 9 item 22: `--weights facenet-vggface2=FILE` with a file that is not the released one.

The file is accepted with a warning, its sha256 enters the face protocol (so features and rows of
the reference weights are never reused for it), run.json records it under
``models.non_reference_weights`` and `stellar report` marks the run "(non-reference weights)".
"""

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")

from stellar.cli import main  # noqa: E402
from stellar.models import registry  # noqa: E402


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch):
    monkeypatch.setenv("STELLAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STELLAR_OFFLINE", "1")
    monkeypatch.delenv("STELLAR_WEIGHTS_DIR", raising=False)
    registry.clear_local_overrides()
    yield
    registry.clear_local_overrides()


def test_evaluate_with_own_facenet_file_is_marked_non_reference(demo_dataset, tmp_path, capsys):
    from PIL import Image

    from stellar.data import StellarDataset
    from stellar.models.faces.facenet import InceptionResnetV1

    torch.manual_seed(0)
    weights = tmp_path / "my-facenet.pt"
    torch.save(InceptionResnetV1().state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    ds = StellarDataset(demo_dataset)
    gen = tmp_path / "gen"
    gen.mkdir()
    for job in [j for j in ds.jobs("test") if j.prompt.index == 0 and j.subject in ("000", "001")]:
        Image.open(job.photo.path).convert("RGB").save(gen / f"{job.name}.png")
    run = tmp_path / "run"
    args = ["evaluate", "--dataset", str(demo_dataset), "--generated", str(gen), "--out", str(run), "--metrics", "ips",
            "--faces", "paper", "--clip", "none", "--device", "cpu", "--weights", f"facenet-vggface2={weights}"]  # fmt: skip
    with pytest.warns(registry.NonReferenceWeightsWarning, match=digest):
        assert main(args) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["models"]["non_reference_weights"] == {"facenet-vggface2": {"20180402-114759-vggface2.pt": digest}}
    assert f"facenet-vggface2!non-reference:20180402-114759-vggface2.pt={digest}" in info["models"]["faces"]
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert "(non-reference weights)" in capsys.readouterr().out
