"""Load and fault test of the study server, small size (the full 20 raters × 2,000 judgements with two
SIGKILLs is ``benchmarks/study_load.py``; its numbers are in benchmarks/README.md).

The real server runs as a subprocess on loopback; it is killed with SIGKILL twice while simulated
raters submit and retry. Nothing acknowledged may be lost, nothing written twice, no pair may get
more raters than planned.
"""

import pytest

from stellar.study.loadtest import run_load_test


def test_server_killed_twice_loses_and_duplicates_nothing(tmp_path):
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    r = run_load_test(tmp_path, raters=6, judgements=150, kills=2, timeout_s=300)
    assert r["errors"] == []
    assert r["kills"] == 2
    assert r["acknowledged"] >= 150
    assert r["lost"] == 0
    assert r["duplicates"] == 0
    assert r["limit_violations"] == []
    assert r["committed"] == r["acknowledged"] and r["committed_not_acknowledged"] == 0
