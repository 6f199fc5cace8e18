"""ENGINE = "auto" never sends a cluster's work to this machine silently; every map says where it went."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

import htmap
from htmap import engines, exceptions
from tests import funcs


@pytest.fixture
def no_cluster(monkeypatch, tmp_path):
    """A PATH without condor_submit and sbatch, no CONDOR_CONFIG, no /etc/condor."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CONDOR_CONFIG", raising=False)
    if os.path.exists("/etc/condor"):
        pytest.skip("/etc/condor exists on this machine")
    htmap.settings["ENGINE"] = "auto"
    return empty


def fake_tool(directory, name, script="exit 1"):
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_auto_takes_local_only_where_no_cluster_is_installed(no_cluster):
    assert engines.resolve_name("auto") == ("local", "auto: no cluster is installed here")


def test_auto_refuses_when_htcondor_is_installed_without_bindings(no_cluster, monkeypatch):
    monkeypatch.setenv("CONDOR_CONFIG", "/nonexistent/condor_config")
    monkeypatch.setitem(sys.modules, "htcondor2", None)  # the bindings are not importable
    with pytest.raises(exceptions.EngineUnavailable) as e:
        htmap.map(funcs.double, [1])
    text = str(e.value)
    assert "htcondor is installed here (CONDOR_CONFIG is set)" in text
    assert "install the bindings" in text and "ENGINE'] = 'local'" in text
    assert htmap.get_tags() == ()


def test_auto_refuses_when_slurm_is_installed_but_does_not_answer(no_cluster):
    fake_tool(no_cluster, "sbatch", "echo 'sbatch: error: Slurm controller not responding' >&2; exit 1")
    with pytest.raises(exceptions.EngineUnavailable, match=r"slurm is installed here \(sbatch is on PATH\)"):
        engines.resolve_name("auto")


def test_an_explicit_local_engine_is_used_even_with_a_cluster_installed(no_cluster, monkeypatch):
    monkeypatch.setenv("CONDOR_CONFIG", "/nonexistent/condor_config")
    htmap.settings["ENGINE"] = "local"
    m = htmap.map(funcs.double, [1, 2], quiet=True)
    assert m.engine == "local" and list(m) == [2, 4]


def test_every_new_map_says_which_engine_it_went_to(capsys):
    htmap.map(funcs.double, [1, 2], tag="said")
    out = capsys.readouterr()
    assert "Created map said with 2 components on the local engine" in out.out + out.err


def test_quiet_maps_say_nothing(capsys):
    htmap.map(funcs.double, [1], tag="hush", quiet=True)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
