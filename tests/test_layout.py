"""Issue 13.2: no directory of a map outgrows AFS (per-component files are sharded), on every
engine, and maps made before sharding still load."""
from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import htmap
from htmap import jobfiles, layout, mapstore
from htmap.engines.base import JobSet
from htmap.layout import FLAT, SHARDED, Layout

from . import funcs

T = 60
AFS_SAFE = 4096  # entries per directory the issue allows

# every per-component directory of the Slurm engine (engine/slurm/<sub>/<component>...)
SLURM_PER_COMPONENT = ("stats", "ends", "holds", "claims", "attempts", "staging", "scratch")


def every_component_entry(c: int):
    """(per-component directory, entry name) of everything a map keeps per component, on any engine;
    ``Layout.output`` & co. are ``Layout.relative`` of these (test_paths_are_the_relative_names)."""
    yield layout.OUTPUTS, f"{c}.out"
    yield layout.LOGS, f"{c}.stdout"
    yield layout.LOGS, f"{c}.stderr"
    yield layout.OUTPUT_FILES, str(c)
    yield layout.CHECKPOINTS, str(c)
    yield layout.ENGINE_INPUTS, f"{c}.in"  # HTCondor: its own input per job
    yield layout.ENGINE_INPUTS, f"_htmap_chunk_{c}.data"  # or chunks (at most one pair per component)
    yield layout.ENGINE_INPUTS, f"_htmap_chunk_{c}.index"
    for sub in SLURM_PER_COMPONENT:
        yield f"engine/slurm/{sub}", f"{c}-1.json"


def largest_directory(paths: Layout, n: int):
    """(directory, entries) of the fullest directory of a map of ``n`` components."""
    files = collections.Counter(os.path.dirname(paths.relative(sub, c, name))  # paths are distinct
                                for c in range(n) for sub, name in every_component_entry(c))
    entries = collections.Counter(files)
    seen = set()
    for directory in files:  # each directory is an entry of its parent, once
        while directory and directory not in seen:
            seen.add(directory)
            directory = os.path.dirname(directory)
            entries[directory] += 1
    directory, count = entries.most_common(1)[0]
    return directory, count


def test_paths_are_the_relative_names(tmp_path):
    for paths in (Layout(tmp_path, SHARDED), Layout(tmp_path, FLAT)):
        for c in (0, 999, 1000, 123_456):
            assert paths.output(c) == tmp_path / paths.relative(layout.OUTPUTS, c, f"{c}.out")
            assert paths.log(c, "stderr") == tmp_path / paths.relative(layout.LOGS, c, f"{c}.stderr")
            assert paths.output_files(c) == tmp_path / paths.relative(layout.OUTPUT_FILES, c, str(c))
            assert paths.checkpoint(c) == tmp_path / paths.relative(layout.CHECKPOINTS, c, str(c))
            assert paths.engine_input(c, "x.in") == tmp_path / paths.relative(layout.ENGINE_INPUTS, c, "x.in")
            stats = tmp_path / "engine/slurm/stats"
            assert paths.component_dir(stats, c) / "n" == tmp_path / paths.relative("engine/slurm/stats", c, "n")


def test_no_directory_of_a_100000_component_map_holds_more_than_4096_entries(tmp_path):
    directory, count = largest_directory(Layout(tmp_path, SHARDED), 100_000)
    assert count <= AFS_SAFE, f"{directory} would hold {count} entries"
    assert count >= 1000  # the count is real: a leaf holds its shard's components
    # what sharding prevents: the old flat layout put every component in one directory
    assert largest_directory(Layout(tmp_path, FLAT), AFS_SAFE + 1)[1] > AFS_SAFE


def test_shards_are_stable_names():
    assert layout.shard(0) == "0/000" and layout.shard(999) == "0/000"
    assert layout.shard(12345) == "0/012" and layout.shard(1_234_567) == "1/234"
    paths = Layout(Path("/m"))
    assert paths.output(12345) == Path("/m/outputs/0/012/12345.out")
    assert paths.log(7, "stderr") == Path("/m/logs/0/000/7.stderr")
    assert paths.output_files(1000) == Path("/m/output_files/0/001/1000")
    assert paths.checkpoint(5) == Path("/m/engine/checkpoints/0/000/5")
    flat = Layout(Path("/m"), FLAT)
    assert flat.output(12345) == Path("/m/outputs/12345.out") and flat.output_files(3) == Path("/m/output_files/3")


def test_make_dirs_creates_one_directory_per_shard(tmp_path):
    Layout(tmp_path).make_dirs(range(2500))
    assert sorted(p.name for p in (tmp_path / "outputs" / "0").iterdir()) == ["000", "001", "002"]
    assert (tmp_path / "logs" / "0" / "002").is_dir() and (tmp_path / "output_files" / "0" / "001").is_dir()


def files_under(directory: Path):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_local_engine_writes_every_per_component_file_in_its_shard():
    m = htmap.map(funcs.make_outputs, range(3), tag="sharded")
    assert list(m.iter(timeout=T)) == [0, 1, 2]
    d = m._dir
    assert files_under(d / "outputs") == ["0/000/0.out", "0/000/1.out", "0/000/2.out"]
    assert set(files_under(d / "output_files")) == {f"0/000/{c}/{name}" for c in range(3)
                                                     for name in ("top.txt", "sub/deep.txt")}
    assert (m.output_files[2] / "top.txt").read_text() == "top 2"
    assert [p.name for p in (d / "outputs").iterdir()] == ["0"]  # nothing per component at the top


def test_local_engine_logs_and_checkpoints_are_sharded():
    m = htmap.map(funcs.chatty, [1, 2], tag="chatty")
    m.wait(timeout=T)
    assert m.stdout[1] and (m._dir / "logs" / "0" / "000" / "1.stdout").read_text() == m.stdout[1]
    assert m._job.paths.checkpoint(1).parent == m._dir / "engine" / "checkpoints" / "0" / "000"


def flatten(m) -> None:
    """Turn a finished map into one as htmap wrote it before sharding."""
    d = m._dir
    for sub in (layout.OUTPUTS, layout.LOGS, layout.OUTPUT_FILES):
        top = d / sub
        leaves = list(m._job.paths.iter_component_dirs(sub))
        os.rename(top, d / "sharded")
        top.mkdir()
        for leaf in leaves:
            for entry in (d / "sharded" / leaf.relative_to(top)).iterdir():
                os.rename(entry, top / entry.name)
        shutil.rmtree(d / "sharded")
    job_script = d / "engine" / "slurm" / "job.py"  # the Slurm engine's, written at the first submit
    if job_script.exists():
        job_script.write_text(job_script.read_text().replace("'sharded': True, ", ""))
    fields = mapstore.read_job(d)
    del fields["layout"]
    with open(d / "job.pkl", "wb") as f:
        pickle.dump(fields, f)


def test_maps_made_before_sharding_still_load_and_rerun():
    m = htmap.map(funcs.make_outputs, range(3), tag="old")
    m.wait(timeout=T)
    flatten(m)
    htmap.Map._instances.clear()
    old = htmap.load("old")
    assert old._job.layout == FLAT
    assert (old._dir / "outputs" / "2.out").is_file()
    assert list(old) == [0, 1, 2]
    assert (old.output_files[1] / "top.txt").read_text() == "top 1"
    assert old.stdout[0] == ""
    old.rerun([1])
    assert old.get(1, timeout=T) == 1
    assert sorted(p.name for p in (old._dir / "outputs").iterdir()) == ["0.out", "1.out", "2.out"]  # still flat


def test_new_maps_record_their_layout():
    m = htmap.map(funcs.double, [1], tag="new")
    assert mapstore.read_job(m._dir)["layout"] == SHARDED
    assert m._job.layout == SHARDED


def test_slurm_job_script_writes_in_the_components_shard(tmp_path):
    """The Slurm task side (no Slurm needed): job.py run as sbatch would, for component 1234."""
    from htmap.engines.slurm import engine as slurm_engine

    directory = tmp_path / "map"
    directory.mkdir()
    jobfiles.layout(directory)
    jobfiles.write_function(directory, funcs.double)
    n = 1235
    with jobfiles.InputWriter(directory / "inputs") as writer:
        for x in range(n):
            writer.add((x,), {})
    job = JobSet(job_id="j", name="j", directory=directory, num_components=n)
    job.paths.make_dirs(range(n))
    d = slurm_engine.SlurmEngine({})._prepare(job)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "34"}
    proc = subprocess.run([sys.executable, str(d / "job.py"), "1200", "1"], env=env, capture_output=True,
                          text=True, timeout=T)
    assert proc.returncode == 0, proc.stderr
    assert jobfiles.read_output(directory / "outputs" / "0" / "001" / "1234.out") == ("OK", 2468)
    assert (directory / "logs" / "0" / "001" / "1234.stdout").exists()
    assert json.loads((d / "stats" / "0" / "001" / "1234").read_text())["runtime"] >= 0
    assert not [p for p in (d / "staging").rglob("*") if p.is_file()]  # published, not left staged
