"""ENGINE = "auto" next to a live pool: HTCondor when its schedd answers, an error (never the local
engine) when it is installed but does not answer."""
from __future__ import annotations

import os
import socket
import sys

import pytest

import htmap
from htmap import engines
from tests import funcs


def test_auto_chooses_the_pool_and_says_so(capsys):
    htmap.settings["ENGINE"] = "auto"
    m = htmap.map(funcs.double, [1, 2], tag="where")
    assert m.engine == "htcondor"
    said = capsys.readouterr()
    assert "Created map where with 2 components on the htcondor engine (auto: the local schedd answered)" in said.out + said.err
    assert list(m) == [2, 4]


@pytest.fixture
def only_htcondor(monkeypatch):
    """Slurm may answer on this machine too (auto would rightly take it): hide sbatch."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))


def test_auto_refuses_a_schedd_that_is_not_there(only_htcondor):
    htmap.settings["ENGINE"] = "auto"
    htmap.settings["HTCONDOR.SCHEDULER"] = "no-such-schedd@nowhere"
    with pytest.raises(htmap.exceptions.EngineUnavailable, match="htcondor is installed here.*ENGINE'] = 'local'"):
        htmap.map(funcs.double, [1])
    assert htmap.get_tags() == ()


def test_auto_refuses_a_collector_slower_than_five_seconds(only_htcondor):
    # a port that accepts connections and never answers: the probe must give up on time
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        htmap.settings["HTCONDOR.COLLECTOR"] = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(htmap.exceptions.EngineUnavailable, match="within 5 s"):
            engines.resolve_name("auto")
    finally:
        silent.close()
