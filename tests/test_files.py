"""Input files, output files and TransferPath on the local engine."""
import pickle
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus, exceptions
from tests import funcs

T = 60


def test_transfer_path_api(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = htmap.TransferPath("data") / "in.txt"
    assert p.as_url() == (tmp_path / "data" / "in.txt").as_uri()
    assert p.name == "in.txt" and p.suffix == ".txt"
    (tmp_path / "data").mkdir()
    p.write_text("hello")
    assert p.read_text() == "hello"
    assert htmap.TransferPath.cwd().path == tmp_path
    assert htmap.TransferPath.home().path == Path.home()
    remote = htmap.TransferPath("/store/f.root", protocol="root", location="eosuser.cern.ch")
    assert remote.as_url() == "root://eosuser.cern.ch//store/f.root"
    assert remote == htmap.TransferPath("/store/f.root", protocol="root", location="eosuser.cern.ch")
    assert len({remote, htmap.TransferPath("/store/f.root", protocol="root", location="eosuser.cern.ch"), p}) == 2
    assert pickle.loads(pickle.dumps(remote)) == remote
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(ValueError, match="protocol"):
        htmap.TransferPath("/x", location="somewhere")


def test_transfer_paths_in_nested_arguments_are_staged(tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"content of {name}")
    m = htmap.map(funcs.read_nested, [{"first": [htmap.TransferPath(tmp_path / "a.txt")],
                                       "second": (htmap.TransferPath(tmp_path / "b.txt"),)}], tag="nested")
    assert m.get(0, timeout=T) == {"first": "content of a.txt", "second": "content of b.txt"}
    args, kwargs = next(m.iter_inputs())
    assert args[0]["first"] == [Path("./a.txt")]  # the component sees a relative path


def test_same_name_from_two_places_is_an_error_at_submit(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for d in ("x", "y"):
        (tmp_path / d / "same.txt").write_text(d)
    with pytest.raises(exceptions.InvalidOption, match="same.txt"):
        htmap.map(funcs.identity, [[htmap.TransferPath(tmp_path / "x" / "same.txt"),
                                    htmap.TransferPath(tmp_path / "y" / "same.txt")]])
    assert htmap.get_tags() == ()


@pytest.mark.engines("local", "slurm")  # HTCondor's scratch directory holds its own files too
def test_directory_whole_or_contents_and_map_option_files(tmp_path):
    d = tmp_path / "dir"
    (d / "inner").mkdir(parents=True)
    (d / "inner" / "f.txt").write_text("f")
    (tmp_path / "fixed.txt").write_text("fixed")
    (tmp_path / "own0.txt").write_text("0")
    (tmp_path / "own1.txt").write_text("1")
    m = htmap.map(funcs.list_cwd, [0, 1], tag="dirs", map_options=htmap.MapOptions(
        fixed_input_files=[str(tmp_path / "fixed.txt"), str(d)],
        input_files=[str(tmp_path / "own0.txt"), [str(tmp_path / "own1.txt"), str(d) + "/"]]))
    assert m.get(0, timeout=T) == ["dir/inner/f.txt", "fixed.txt", "own0.txt"]
    assert m.get(1, timeout=T) == ["dir/inner/f.txt", "fixed.txt", "inner/f.txt", "own1.txt"]


def test_missing_input_file_holds_only_that_component_until_released(tmp_path):
    present = tmp_path / "present.txt"
    present.write_text("here")
    missing = tmp_path / "missing.txt"
    m = htmap.map(funcs.read_text, [htmap.TransferPath(present), htmap.TransferPath(missing)], tag="missing")
    assert m.get(0, timeout=T) == "here"
    m.wait(timeout=T, holds_ok=True)
    assert m.component_statuses[1] is ComponentStatus.HELD
    hold = m.holds[1]
    assert str(missing) in hold.reason
    assert str(missing) in m.hold_report()
    with pytest.raises(exceptions.MapComponentHeld, match="missing.txt"):
        m.get(1, timeout=T)
    missing.write_text("now here")
    m.release()
    assert m.get(1, timeout=T) == "now here"


def test_transfer_output_files_come_back_with_nested_paths():
    m = htmap.map(funcs.make_outputs, [0, 1], tag="outs")
    m.wait(timeout=T)
    assert (m.output_files[1] / "sub" / "deep.txt").read_text() == "deep 1"
    assert (m.output_files.get(0, timeout=T) / "top.txt").read_text() == "top 0"


def test_transfer_output_files_outside_a_component_is_a_no_op(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "f.txt").write_text("x")
    htmap.transfer_output_files("f.txt")
    htmap.checkpoint("f.txt")
    assert sorted(p.name for p in work.iterdir()) == ["f.txt"]


def test_output_remaps_send_files_elsewhere(tmp_path):
    dest = tmp_path / "elsewhere"
    dest.mkdir()
    m = htmap.map(funcs.make_outputs, [0, 1], tag="remap", map_options=htmap.MapOptions(
        output_remaps=[{"top.txt": htmap.TransferPath(dest / "top-0.txt")},
                       {"top.txt": str(dest / "top-1.txt")}]))
    m.wait(timeout=T)
    assert (dest / "top-0.txt").read_text() == "top 0"
    assert (dest / "top-1.txt").read_text() == "top 1"
    assert not (m.output_files[0] / "top.txt").exists()
    assert (m.output_files[0] / "sub" / "deep.txt").exists()


@pytest.mark.engines("local", "slurm")  # HTCondor transfers URLs itself
def test_output_remap_to_a_url_is_rejected_by_the_local_engine():
    with pytest.raises(exceptions.InvalidOption, match="local"):
        htmap.map(funcs.make_outputs, [0], map_options=htmap.MapOptions(
            output_remaps={"top.txt": htmap.TransferPath("/x/top.txt", protocol="s3", location="bucket")}))
    assert htmap.get_tags() == ()
