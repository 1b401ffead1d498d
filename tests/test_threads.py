"""``stellar.device.configure_threads`` and the shared ``--threads`` option of the model-backed commands."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from stellar import cli  # noqa: E402
from stellar.device import AUTO_THREADS, configure_threads  # noqa: E402
from stellar.errors import StellarError  # noqa: E402


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_sets_torch_intra_op_threads():
    assert configure_threads(1) == 1 == torch.get_num_threads()
    assert configure_threads("2") == 2 == torch.get_num_threads()
    assert configure_threads(" 1 ") == 1


def test_auto_is_one_thread_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert AUTO_THREADS == 1
    assert configure_threads("auto") == 1 == torch.get_num_threads()
    assert configure_threads("AUTO") == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a launcher's (torchrun) or the user's choice is kept
    assert configure_threads("auto") == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert configure_threads("auto") == 1


def test_none_leaves_torch_alone():
    torch.set_num_threads(2)
    assert configure_threads(None) == 2 == torch.get_num_threads()


@pytest.mark.parametrize("bad", [0, -1, "0", "many", "1.5", "", True])
def test_bad_thread_counts_are_a_typed_error(bad):
    with pytest.raises(StellarError, match="--threads"):
        configure_threads(bad)


MODEL_COMMANDS = [
    ["evaluate", "--dataset", "d", "--generated", "g", "--out", "o"],
    ["faces", "detect", "a.jpg"],
    ["faces", "similarity", "a.jpg", "b.jpg"],
    ["generate", "--method", "copy", "--dataset", "d", "--out", "o"],
    ["train", "stellarnet", "--images", "i", "--out", "o"],
    ["demo"],
]


@pytest.mark.parametrize("argv", MODEL_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_model_backed_command_has_threads(argv):
    parser = cli.build_parser()
    assert parser.parse_args(argv).threads == "auto"
    assert parser.parse_args([*argv, "--threads", "3"]).threads == "3"


def test_cli_applies_threads_before_the_command_runs(monkeypatch):
    from stellar.commands import faces

    seen = []
    monkeypatch.setattr(faces, "cmd_detect", lambda args: seen.append(torch.get_num_threads()) or 0)
    torch.set_num_threads(2)
    assert cli.main(["faces", "detect", "a.jpg", "--threads", "1"]) == 0
    assert seen == [1]


def test_cli_bad_threads_is_one_clear_error(monkeypatch, capsys):
    from stellar.commands import faces

    monkeypatch.setattr(faces, "cmd_detect", lambda args: pytest.fail("the command must not run"))
    assert cli.main(["faces", "detect", "a.jpg", "--threads", "zero"]) == 2
    err = capsys.readouterr().err
    assert "--threads 'zero'" in err and "Traceback" not in err
