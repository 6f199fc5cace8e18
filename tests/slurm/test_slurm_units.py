"""Parts of the slurm engine that need no cluster: parsing, array planning, option checks."""
from __future__ import annotations

import subprocess

import pytest

from htmap import exceptions
from htmap.engines.base import JobSet
from htmap.engines.slurm import commands
from htmap.engines.slurm.engine import SlurmEngine


def test_compress_expand_round_trip():
    assert commands.compress([5, 0, 1, 2, 7, 9, 10]) == "0-2,5,7,9-10"
    assert [i for r in commands.expand("0-2,5,7,9-10") for i in r] == [0, 1, 2, 5, 7, 9, 10]


def test_plan_chunks_split_at_max_array_size_with_offsets():
    plans = commands.plan_chunks(range(2500), 1001)
    assert [(o, s, len(c)) for o, s, c in plans] == [(0, "0-1000", 1001), (1001, "0-1000", 1001), (2002, "0-497", 498)]
    # a sparse rerun: indices relative to the first component, so component 5000 fits a 1001 cap
    assert commands.plan_chunks([5000, 5002], 1001) == [(5000, "0,2", [5000, 5002])]


def test_parse_squeue_rows():
    text = ("7|2|1|COMPLETED|None|0|0|UNLIMITED|50M|2026-11-25T17:00:53|\n"
            "2|2|3|FAILED|NonZeroExitCode|768|0|UNLIMITED|50M|2026-11-25T17:00:53|\n"
            "11|9|1|PENDING|job requeued in held state|0|1|1:00|100M|N/A|\n"
            "12|12|N/A|RUNNING|None|0|0|1:00|100M|N/A|\n")
    rows = commands.parse_squeue(text)
    assert [(r.array_id, r.task, r.state, r.exit_status >> 8, r.restarts) for r in rows] == [
        ("2", 1, "COMPLETED", 0, 0), ("2", 3, "FAILED", 3, 0), ("9", 1, "PENDING", 0, 1)]
    assert rows[2].reason == "job requeued in held state"


def test_sacct_rows(monkeypatch):
    out = "40_3|44|TIMEOUT|0:15|100M|2026-11-25T17:00:53\n40_[5-9]|40|PENDING|0:0|100M|None\n40_4|45|CANCELLED by 0|0:0|1G|x\n"
    monkeypatch.setattr(commands, "run", lambda cmd, timeout=0: subprocess.CompletedProcess(cmd, 0, out, ""))
    rows = commands.sacct(["40"])
    assert [(r.job_id, r.task, r.state, r.exit_status) for r in rows] == [("44", 3, "TIMEOUT", 15), ("45", 4, "CANCELLED", 0)]


def test_time_and_memory_formats():
    assert commands.format_time(90) == "1:30"
    assert commands.parse_time("1-02:03:04") == 93784
    assert commands.memory_mb("2G") == 2048 and commands.memory_mb("100M") == 100


@pytest.mark.parametrize("key", ["array", "output", "mem", "--time", "cpus-per-task", "partition", "J", "wrap"])
def test_check_rejects_reserved_sbatch_options(key, tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "sbatch_available", lambda timeout=5: (True, "test"))
    job = JobSet(job_id="x", name="x", directory=tmp_path, num_components=1, custom={key: "1"})
    with pytest.raises(exceptions.ReservedOptionKeyword, match="set by htmap"):
        SlurmEngine({}).check(job)


def test_check_accepts_other_custom_options(tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "sbatch_available", lambda timeout=5: (True, "test"))
    job = JobSet(job_id="x", name="x", directory=tmp_path, num_components=1,
                 custom={"constraint": "haswell", "exclusive": True, "C": "haswell", "d": "afterok:1"},
                 fixed={"max_running": 4})
    SlurmEngine({}).check(job)
    job.fixed["max_running"] = 0
    with pytest.raises(exceptions.InvalidOption, match="max_running"):
        SlurmEngine({}).check(job)


def test_check_says_why_when_slurm_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(commands, "sbatch_available", lambda timeout=5: (False, "sbatch is not on PATH"))
    job = JobSet(job_id="x", name="x", directory=tmp_path, num_components=1)
    with pytest.raises(exceptions.EngineUnavailable, match="sbatch is not on PATH"):
        SlurmEngine({}).check(job)


def test_permission_errors_say_who_may_do_it(monkeypatch):
    monkeypatch.setattr(commands, "run", lambda cmd, timeout=0: subprocess.CompletedProcess(
        cmd, 1, "", "slurm_suspend error: Access/permission denied"))
    with pytest.raises(commands.SlurmPermissionError, match="operator"):
        SlurmEngine._scontrol(["scontrol", "suspend"], ["12_[0-3]"], operator=True)


def test_races_with_finished_jobs_are_not_errors(monkeypatch):
    monkeypatch.setattr(commands, "run", lambda cmd, timeout=0: subprocess.CompletedProcess(
        cmd, 1, "", "12_0-1: Job has already finished\n12_3: Job/step already completing or completed"))
    SlurmEngine._scontrol(["scontrol", "hold"], ["12_[0-3]"])
