"""htmap tried as an adversary would (issue 12): kill -9, damaged files, hostile local users, odd settings."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import htmap
from htmap import ComponentStatus
from tests import funcs
from tests.helpers import run_cli, supervisor_pids, wait_until

T = 60
REPO = Path(__file__).parent.parent


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=T, **kwargs)


def runs_per_component(markers: Path) -> dict:
    counts: dict = {}
    for name in os.listdir(markers):
        if name.startswith("run-"):
            c = int(name.split("-")[1])
            counts[c] = counts.get(c, 0) + 1
    return counts


# -- 12.1 ------------------------------------------------------------------------------------

def test_after_a_supervisor_kill_each_running_component_runs_at_most_once_more(isolated_htmap, tmp_path):
    htmap.settings["LOCAL.MAX_WORKERS"] = 2
    markers, release = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    n = 300  # enough pending components that the restarted supervisor sends them in chunks
    m = htmap.starmap(funcs.run_count_then_wait, args=[(str(markers), str(release), i) for i in range(n)],
                      tag="double")
    wait_until(lambda: len(runs_per_component(markers)) == 2, T, message="two components to start")
    running = set(runs_per_component(markers))
    _kill_supervisor(isolated_htmap)
    release.touch()
    m.wait(timeout=T)
    counts = runs_per_component(markers)
    assert {c: k for c, k in counts.items() if c in running and k > 2} == {}, counts
    assert {c: k for c, k in counts.items() if c not in running and k != 1} == {}
    assert len(counts) == n
    assert list(m) == [10 * i for i in range(n)]


def child_env(tmp_path: Path, **extra: str) -> dict:
    """An environment for a child Python: this checkout importable, a private HOME, a quick supervisor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HTMAP")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(REPO), HOME=str(home), HTMAP_ENGINE="local", HTMAP_LOCAL__IDLE_EXIT_SECONDS="1")
    env.update(extra)
    return env


# -- 12.3 ------------------------------------------------------------------------------------

def test_a_relative_htmap_dir_is_made_absolute_where_it_is_read(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = run_python("""
        import htmap
        from tests import funcs
        print(htmap.settings["HTMAP_DIR"])
        m = htmap.map(funcs.double, range(2), tag="rel")
        print(list(m.iter(timeout=15)))
    """, cwd=work, env=child_env(tmp_path, HTMAP_DIR="maps"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [str(work / "maps"), "[0, 2]"]
    assert (work / "maps" / "tags" / "rel").exists()


# -- 12.4 ------------------------------------------------------------------------------------

def test_settings_reset_to_base_keeps_htmap_dir_from_the_environment(tmp_path):
    chosen = tmp_path / "chosen"
    env = child_env(tmp_path, HTMAP_DIR=str(chosen))
    home_maps = Path(env["HOME"]) / ".htmap"
    made = run_python("""
        import htmap
        from tests import funcs
        htmap.map(funcs.double, [1], tag="in-home").wait(timeout=15)
    """, env={**env, "HTMAP_DIR": str(home_maps)})
    assert made.returncode == 0, made.stderr
    proc = run_python("""
        import htmap
        from tests import funcs
        htmap.map(funcs.double, [1], tag="in-chosen").wait(timeout=15)
        htmap.settings.replace(htmap.BASE_SETTINGS)
        print(htmap.settings["HTMAP_DIR"])
        print(htmap.clean(all=True))
    """, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [str(chosen), "['in-chosen']"]
    assert (home_maps / "tags" / "in-home").exists()


# -- 12.5 ------------------------------------------------------------------------------------

def test_concurrent_starts_leave_one_supervisor_and_nothing_else(isolated_htmap, tmp_path):
    private_tmp, go = tmp_path / "tmp", tmp_path / "go"
    private_tmp.mkdir()
    code = textwrap.dedent(f"""
        import os, time
        from htmap.engines.local.engine import LocalEngine
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        LocalEngine({{"HTMAP_DIR": {str(isolated_htmap)!r}, "LOCAL": {{"IDLE_EXIT_SECONDS": 5}}}}).ensure_supervisor()
    """)
    env = child_env(tmp_path, TMPDIR=str(private_tmp))
    clients = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(5)]
    go.touch()
    assert [c.wait(timeout=T) for c in clients] == [0] * 5
    wait_until(lambda: len(supervisor_pids(isolated_htmap)) == 1, T, message="one supervisor to be left")
    (survivor,) = supervisor_pids(isolated_htmap)
    scratch = wait_until(lambda: os.listdir(private_tmp), T, message="the survivor's scratch directory")
    assert scratch == [f"htmap-scratch-{survivor}-{scratch[0].rsplit('-', 1)[1]}"]


# -- 12.13 -----------------------------------------------------------------------------------

def test_a_mistyped_option_warns_naming_the_closest_known_one(isolated_htmap):
    with pytest.warns(UserWarning, match="'request_memmory' means nothing to the local engine.*did you mean "
                                         "'request_memory'"):
        m = htmap.map(funcs.double, [1], map_options=htmap.MapOptions(request_memmory="100MB"), tag="typo")
    assert m.get(0, timeout=T) == 2


def test_map_options_may_be_a_dict(isolated_htmap):
    m = htmap.map(funcs.double, [1, 2], map_options={"request_memory": "1GB"}, tag="as-dict")
    assert list(m.iter(timeout=T)) == [2, 4]
    assert m._job.fixed["request_memory"] == 1024


def test_map_options_of_another_type_say_what_to_pass(isolated_htmap):
    with pytest.raises(htmap.exceptions.InvalidOption, match="must be a htmap.MapOptions .or a dict"):
        htmap.map(funcs.double, [1], map_options=["request_memory=1GB"])
    assert htmap.get_tags() == ()


@pytest.mark.parametrize("bad", [5, [1.5], ["ok.txt", None]])
def test_fixed_input_files_that_are_not_paths_are_refused_at_once(isolated_htmap, bad):
    with pytest.raises(htmap.exceptions.InvalidOption, match="fixed_input_files entry .* not a path"):
        htmap.MapOptions(fixed_input_files=bad)


# -- 12.14 -----------------------------------------------------------------------------------

def test_an_endless_input_stops_at_max_components_leaving_nothing(isolated_htmap):
    import itertools

    htmap.settings["MAX_COMPONENTS"] = 1000
    with pytest.raises(htmap.exceptions.TooManyComponents, match="MAX_COMPONENTS=1000.*nothing was submitted"):
        htmap.map(funcs.double, itertools.count(), tag="endless")
    assert htmap.get_tags() == ()
    assert list((isolated_htmap / "maps").iterdir()) == []
    assert list((isolated_htmap / "tags").iterdir()) == []
    m = htmap.map(funcs.double, range(1000), tag="just-fits")  # exactly the limit is fine
    assert len(m) == 1000
    assert htmap.settings["MAX_COMPONENTS"] == 1000 and htmap.BASE_SETTINGS["MAX_COMPONENTS"] == 10_000_000


# -- 12.15 -----------------------------------------------------------------------------------

def raise_keyboard_interrupt(_):
    raise KeyboardInterrupt("stop here")


def test_a_component_raising_keyboard_interrupt_reports_the_exception(isolated_htmap):
    m = htmap.map(raise_keyboard_interrupt, [1], tag="kbd")
    m.wait(timeout=T, errors_ok=True)
    err = m.get_err(0)
    assert err.exception_type == "KeyboardInterrupt" and "stop here" in err.exception_msg
    assert "raise_keyboard_interrupt" in err.report() and "signal" not in err.exception_msg


# -- 12.16 -----------------------------------------------------------------------------------

def test_a_missing_transfer_path_warns_at_submit_and_the_component_is_held(isolated_htmap, tmp_path):
    missing = tmp_path / "not-there.txt"
    with pytest.warns(UserWarning, match=f"input file {missing} does not exist now.*release"):
        m = htmap.map(funcs.read_text, [htmap.TransferPath(missing)], tag="missing-input")
    wait_until(lambda: m.component_statuses == [ComponentStatus.HELD], T, message="the component to be held")
    missing.write_text("here now")
    m.release()
    assert m.get(0, timeout=T) == "here now"


# -- 12.6, 12.7, 12.10: one damaged map never blocks the others -------------------------------

def _truncate_job(d: Path) -> str:
    data = (d / "job.pkl").read_bytes()
    (d / "job.pkl").write_bytes(data[: len(data) // 2])
    return "job.pkl"


def _delete_job(d: Path) -> str:
    (d / "job.pkl").unlink()
    return "job.pkl"


def _garble_meta(d: Path) -> str:
    (d / "map.json").write_bytes(b"\xff\xfe{garbled")
    return "map.json"


def _damaged_pair(damage):
    good = htmap.map(funcs.double, [1, 2], tag="good")
    bad = htmap.map(funcs.double, [3], tag="bad")
    good.wait(timeout=T)
    bad.wait(timeout=T)
    htmap.Map._instances.clear()  # as in a new process
    return good, damage(bad._dir)


@pytest.mark.parametrize("damage", [_truncate_job, _delete_job, _garble_meta])
def test_a_damaged_map_is_listed_as_damaged_and_the_others_work(isolated_htmap, damage):
    good, damaged_file = _damaged_pair(damage)
    result = run_cli("status")
    assert result.exit_code == 0, result.stderr
    assert "good" in result.stdout and "bad" not in result.stdout
    assert "map 'bad' is damaged" in result.stderr and damaged_file in result.stderr
    assert "htmap remove --force bad" in result.stderr
    result = run_cli("tags")
    assert result.exit_code == 0 and result.stdout.split() == ["bad", "good"]
    text = htmap.status()
    assert "good" in text and "bad: DAMAGED" in text and damaged_file in text
    with pytest.warns(UserWarning, match="map 'bad' is damaged"):
        assert [m.tag for m in htmap.load_maps()] == ["good"]
    with pytest.raises(htmap.exceptions.MapIsDamaged, match=f"{damaged_file}.*remove --force bad"):
        htmap.load("bad")
    assert list(htmap.load("good")) == [2, 4]


@pytest.mark.parametrize("damage", [_truncate_job, _garble_meta])
def test_remove_and_clean_delete_a_damaged_map_only_with_force(isolated_htmap, damage):
    good, damaged_file = _damaged_pair(damage)
    result = run_cli("remove", "bad")
    assert result.exit_code == 1 and "map 'bad' is damaged" in result.stderr and "--force" in result.stderr
    result = run_cli("clean", "--all")
    assert result.exit_code == 0, result.stderr
    assert "Removed map good" in result.stdout and "map 'bad' is damaged" in result.stderr
    assert htmap.get_tags() == ("bad",)
    result = run_cli("remove", "--force", "bad")
    assert result.exit_code == 0 and "Removed damaged map bad" in result.stdout
    assert htmap.get_tags() == () and list((isolated_htmap / "maps").iterdir()) == []


def test_clean_force_deletes_a_damaged_map(isolated_htmap):
    _damaged_pair(_delete_job)
    result = run_cli("clean", "--all", "--force")
    assert result.exit_code == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:2]) == ["Removed map bad", "Removed map good"]
    assert htmap.get_tags() == () and list((isolated_htmap / "maps").iterdir()) == []


def _age(path: Path, seconds: float = 3600) -> None:
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def test_an_empty_tag_file_is_damaged_and_removable(isolated_htmap):
    htmap.map(funcs.double, [1], tag="empty").wait(timeout=T)
    htmap.Map._instances.clear()
    tag_file = isolated_htmap / "tags" / "empty"
    tag_file.write_text("")
    _age(tag_file)
    with pytest.raises(htmap.exceptions.TagAlreadyExists, match="damaged: its tag file .*empty is empty.*--force"):
        htmap.map(funcs.double, [1], tag="empty")
    result = run_cli("remove", "empty")
    assert result.exit_code == 1 and "is damaged" in result.stderr and "does not exist" not in result.stderr
    assert run_cli("remove", "--force", "empty").exit_code == 0
    assert htmap.map(funcs.double, [5], tag="empty").get(0, timeout=T) == 10


def test_a_tag_file_pointing_outside_htmap_dir_is_never_followed(isolated_htmap, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    htmap.map(funcs.double, [1], tag="evil").wait(timeout=T)
    htmap.Map._instances.clear()
    tag_file = isolated_htmap / "tags" / "evil"
    tag_file.write_text("../../victim")  # maps/../../victim is tmp_path/victim
    assert (isolated_htmap / "maps" / "../../victim").resolve() == victim.resolve()
    for args in (["remove", "evil"], ["status"], ["remove", "--force", "evil"], ["clean", "--all", "--force"]):
        run_cli(*args)
        assert (victim / "precious").read_text() == "keep me", args
    assert not tag_file.exists()
    with pytest.raises(htmap.exceptions.MapIsDamaged, match="not a map id"):
        htmap.mapstore.map_directory("../../victim")


# -- 12.8 ------------------------------------------------------------------------------------

def test_garbled_event_lines_are_skipped_with_one_warning_and_waiting_ends(isolated_htmap, tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(funcs.wait_for_file, [str(gate)], tag="garbled")
    wait_until(lambda: m.component_statuses == [ComponentStatus.RUNNING], T, message="the component to run")
    events = m._dir / "engine" / "events"
    with open(events, "ab") as f:
        f.write(b"1.0 0 bogus -\n12 x\n1.0 99 completed -\n")  # an unknown kind, a torn line, no such component
        f.write(b"\x00\xffgarbage {")  # and a partial line the next event must not be glued to
    gate.touch()
    with pytest.warns(RuntimeWarning, match=r"\d lines of .*events could not be read and were skipped") as caught:
        m.wait(timeout=15)
        assert m.component_statuses == [ComponentStatus.COMPLETED]
    assert len([w for w in caught if "could not be read" in str(w.message)]) == 1
    assert m.get(0) is None


# -- 12.9 ------------------------------------------------------------------------------------

def _can_mount_read_only(path: Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {path} {path} && "
                            f"mount -o remount,bind,ro {path}"], capture_output=True)
    return probe.returncode == 0


def test_a_read_only_htmap_dir_can_be_read(isolated_htmap, tmp_path):
    m = htmap.map(funcs.chatty, [1, 2], tag="colleague")
    m.wait(timeout=T)
    (m._dir / "state").unlink()  # never folded by its owner: reading must fold the events without saving
    held = htmap.map(funcs.double, [1], tag="held", map_options={"max_runtime": "1 hour"})
    held.hold()  # unfinished: reading it looks for its supervisor, which has exited when idle
    wait_until(lambda: not supervisor_pids(isolated_htmap), T, message="the supervisor to exit when idle")
    if not _can_mount_read_only(isolated_htmap):
        pytest.skip("cannot make a read-only bind mount here (needs root and mount namespaces)")
    code = textwrap.dedent("""
        import htmap
        print(htmap.status())
        m = htmap.load("colleague")
        print(repr(m.stdout[1]), m.get(1), m.local_data > 0, len(m.errors))
    """)
    env = child_env(tmp_path, HTMAP_DIR=str(isolated_htmap))
    proc = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind "$D" "$D" && mount -o remount,bind,ro "$D" '
                           f'&& exec "$PY" -c "$CODE"'], env={**env, "D": str(isolated_htmap),
                           "PY": sys.executable, "CODE": code}, capture_output=True, text=True, timeout=T)
    assert proc.returncode == 0, proc.stderr
    assert "colleague" in proc.stdout and "held" in proc.stdout and "COMPLETED" in htmap.load("colleague").status()
    assert "'out 2\\n' 2 True 0" in proc.stdout
    result = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind "$D" "$D" && mount -o remount,bind,ro "$D" '
                             f'&& exec "$PY" -m htmap status'], env={**env, "D": str(isolated_htmap),
                             "PY": sys.executable}, capture_output=True, text=True, timeout=T)
    assert result.returncode == 0 and "colleague" in result.stdout, result.stderr


# -- 12.11 -----------------------------------------------------------------------------------

SQUATTER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(bytes.fromhex(sys.argv[1]))
s.listen(8)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.getuid() != 0 or not sys.platform.startswith("linux"), reason="needs root to run as nobody")
def test_a_socket_squatted_by_another_user_fails_loudly_before_submitting(isolated_htmap):
    from htmap.engines.local import protocol

    address = protocol.socket_address(isolated_htmap)
    squatter = subprocess.Popen(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", SQUATTER,
                                 address.encode().hex()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout.readline() == "ready\n"
        with pytest.raises(htmap.exceptions.SupervisorSocketTaken, match=r"another user's process \(uid 65534"):
            htmap.map(funcs.double, [1], tag="squatted")
        assert htmap.get_tags() == () and list((isolated_htmap / "maps").iterdir()) == []
        result = run_cli("status")
        assert result.exit_code == 0  # nothing needs the supervisor
    finally:
        squatter.stdin.close()  # the squatter exits at end of input (runuser waits for it)
        squatter.wait(timeout=T)
    assert htmap.map(funcs.double, [1], tag="ours").get(0, timeout=T) == 2


# -- 12.12 -----------------------------------------------------------------------------------

def checkpoint_output_then_wait(gate):
    Path("state.txt").write_text("step 1")
    htmap.checkpoint("state.txt")
    os.makedirs("sub", exist_ok=True)
    Path("sub/result.txt").write_text("result")
    htmap.transfer_output_files("sub/result.txt")
    funcs.wait_for_file(gate)
    return 1


def modes_under(root: Path) -> dict:
    """{path: mode} of everything below ``root`` whose mode is not private (0700 dirs, 0600 files)."""
    bad = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            mode = p.stat().st_mode & 0o777
            if mode != (0o700 if p.is_dir() else 0o600):
                bad[str(p.relative_to(root))] = oct(mode)
    return bad


def test_a_map_is_private_whatever_the_umask(isolated_htmap, tmp_path):
    gate = tmp_path / "gate"
    old = os.umask(0)
    try:
        m = htmap.map(checkpoint_output_then_wait, [str(gate)], tag="umask")
        checkpoints = m._dir / "engine" / "checkpoints" / "0"
        wait_until(checkpoints.exists, T, message="the checkpoint")
        assert modes_under(isolated_htmap) == {}
        gate.touch()
        assert m.get(0, timeout=T) == 1
    finally:
        os.umask(old)
    assert (m.output_files[0] / "sub" / "result.txt").read_text() == "result"
    assert modes_under(isolated_htmap) == {}


# -- 12.2 ------------------------------------------------------------------------------------

def _kill_supervisor(htmap_dir: Path) -> None:
    # a second one started in a race exits at once, having lost the socket
    (pid,) = wait_until(lambda: len(supervisor_pids(htmap_dir)) == 1 and supervisor_pids(htmap_dir), T,
                        message="exactly one supervisor")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not supervisor_pids(htmap_dir), T, message="the supervisor to die")


def test_htmap_status_restarts_a_killed_supervisor_and_says_so(isolated_htmap, tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(funcs.wait_for_file, [str(gate)], tag="orphan")
    wait_until(lambda: m.component_statuses == [ComponentStatus.RUNNING], T, message="the component to run")
    _kill_supervisor(isolated_htmap)
    htmap.Map._instances.clear()  # the command runs as in a new process
    result = run_cli("status")
    assert result.exit_code == 0, result.stderr
    assert "WARNING: htmap's local supervisor for" in result.stderr and "had stopped" in result.stderr
    assert "started it again" in result.stderr
    wait_until(lambda: supervisor_pids(isolated_htmap), T, message="a new supervisor")
    gate.touch()
    wait_until(lambda: m.is_done, T, message="the map to finish with no client waiting")


def test_waiting_restarts_a_killed_supervisor_with_a_warning(isolated_htmap, tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(funcs.wait_for_file, [str(gate)], tag="orphan2")
    wait_until(lambda: m.component_statuses == [ComponentStatus.RUNNING], T, message="the component to run")
    _kill_supervisor(isolated_htmap)
    gate.touch()
    with pytest.warns(RuntimeWarning, match="supervisor .* had stopped .* 1 map not finished"):
        m.wait(timeout=T)
    with _no_warning():
        htmap.map(funcs.double, [1], tag="fresh").wait(timeout=T)  # an ordinary start says nothing


class _no_warning:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self.caught = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        assert not [w for w in self.caught if "had stopped" in str(w.message)]


def test_recovery_ignores_event_lines_of_components_the_map_does_not_have(isolated_htmap):
    from htmap.engines.local.supervisor import Job

    m = htmap.map(funcs.double, [1], tag="recover-garbled")
    m.wait(timeout=T)
    with open(m._dir / "engine" / "events", "ab") as f:
        f.write(b"1.0 99 running -\n1.0 x running -\n")
    job = Job({"job_id": m.uid, "directory": str(m._dir), "num_components": 1})
    assert len(job.state) == 1 and job.finished()


def test_a_supervisor_that_exited_when_idle_is_restarted_silently(isolated_htmap, tmp_path):
    m = htmap.map(funcs.wait_for_file, [str(tmp_path / "gate")], tag="held-idle")
    m.hold()  # unfinished, but nothing to run: the supervisor exits after LOCAL.IDLE_EXIT_SECONDS
    wait_until(lambda: not supervisor_pids(isolated_htmap), T, message="the supervisor to exit when idle")
    htmap.Map._instances.clear()
    result = run_cli("release", "held-idle")
    assert result.exit_code == 0 and "had stopped" not in result.stderr, result.stderr
    (tmp_path / "gate").touch()
    htmap.load("held-idle").wait(timeout=T)


def test_a_mistyped_option_warns_on_slurm_too(tmp_path, monkeypatch):
    from htmap.engines import JobSet
    from htmap.engines.slurm.engine import SlurmEngine

    from htmap.engines.slurm import commands

    monkeypatch.setattr(commands, "sbatch_available", lambda *a, **k: (False, "not probed in this test"))
    job = JobSet(directory=tmp_path, job_id="20261208-0123456789abcdef", name="t", num_components=1,
                 fixed={"request_memmory": 5, "partition": "short"}, per_component={}, custom={}, settings={},
                 fixed_input_files=[], input_files=None, output_remaps=None)
    with pytest.warns(UserWarning, match="'request_memmory' means nothing to the slurm engine.*'request_memory'"):
        try:
            SlurmEngine({}).check(job)
        except htmap.exceptions.EngineUnavailable:
            pass  # no Slurm here: the warning came first


def test_commands_over_all_maps_skip_a_damaged_one_with_a_warning(isolated_htmap):
    _damaged_pair(_truncate_job)
    for args in (["wait", "--all"], ["wait", "-p", "*"], ["errors", "--all"], ["hold", "--all"],
                 ["release", "--all"]):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert result.stderr.count("map 'bad' is damaged") == 1, (args, result.stderr)
    result = run_cli("wait", "bad")  # named: an error, not a silent skip
    assert result.exit_code == 1 and "map 'bad' is damaged" in result.stderr
    assert run_cli("remove", "--all", "--force").exit_code == 0
    assert htmap.get_tags() == ()
