"""The command line as scripts use it (issue 13.7): json/csv records, selections read from
standard input, one suggestion for a mistyped command."""
from __future__ import annotations

import csv
import io
import json

import pytest

import htmap
from tests import funcs
from tests.helpers import run_cli, wait_until

T = 60


@pytest.fixture
def mixed():
    """A finished map whose component 3 errored, and a map with a held component."""
    m = htmap.starmap(funcs.fail_on, args=[(x,) for x in range(4)], kwargs=[{"bad": 3}] * 4, tag="mixed")
    m.wait(timeout=T, errors_ok=True)
    return m


def rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_components_as_json_and_csv(mixed):
    data = json.loads(run_cli("components", "mixed", "--format", "json").stdout)
    assert data[3] == {"tag": "mixed", "component": 3, "status": "ERRORED"} and len(data) == 4
    table = rows(run_cli("components", "mixed", "--format", "csv").stdout)
    assert list(table[0]) == ["tag", "component", "status"]
    assert [r["status"] for r in table] == ["COMPLETED", "COMPLETED", "COMPLETED", "ERRORED"]
    only = json.loads(run_cli("components", "mixed", "--status", "errored", "--format", "json").stdout)
    assert [r["component"] for r in only] == [3]


def test_errors_as_json_and_csv(mixed):
    data = json.loads(run_cli("errors", "mixed", "--format", "json").stdout)
    assert len(data) == 1 and data[0]["component"] == 3 and data[0]["exception_msg"] == "component input 3 is bad"
    assert "raise ValueError" in data[0]["report"]
    table = rows(run_cli("errors", "mixed", "--format", "csv").stdout)
    assert list(table[0]) == ["tag", "component", "kind", "exception_type", "exception_msg"]
    assert table[0]["component"] == "3" and table[0]["kind"] == "exception"


def test_reasons_as_json_and_csv(tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(funcs.wait_for_file, [str(gate)] * 2, tag="heldmap")
    m.hold(components=[1])
    wait_until(lambda: 1 in m.holds, T, message="component 1 held")
    data = json.loads(run_cli("reasons", "heldmap", "--format", "json").stdout)
    assert [(r["tag"], r["component"]) for r in data] == [("heldmap", 1)] and data[0]["reason"]
    table = rows(run_cli("reasons", "heldmap", "--format", "csv").stdout)
    assert list(table[0]) == ["tag", "component", "code", "reason"]
    gate.touch()
    m.remove()


def test_status_csv_columns_are_in_the_same_order_in_the_api_and_the_cli(mixed):
    api = next(csv.reader(io.StringIO(htmap.status_csv())))
    cli = next(csv.reader(io.StringIO(run_cli("status", "--format", "csv").stdout)))
    assert api == cli and api[:4] == ["tag", "engine", "transient", "components"]


@pytest.mark.parametrize("command", ["wait", "remove", "errors", "hold", "reasons"])
def test_no_tags_on_standard_input_is_a_usage_error(mixed, command):
    result = run_cli(command, input="")
    assert result.exit_code == 2 and "no maps selected" in result.stderr
    assert htmap.get_tags() == ("mixed",)


def test_a_mistyped_command_gets_one_suggestion():
    result = run_cli("stauts")
    assert result.exit_code == 2 and "status" in result.stderr
    assert result.stderr.lower().count("did you mean") == 1, result.stderr


def _bash_complete(tmp_path, words, cword):
    """Run click's completion script for htmap in a real bash, with the words bash would make."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "htmap"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m htmap "$@"\n')
    script.chmod(0o755)
    root = str(Path(__file__).parent.parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": root}
    words_bash = " ".join(f"'{w}'" for w in words)
    program = (f'eval "$(_HTMAP_COMPLETE=bash_source htmap)"\n'
               f'COMP_WORDS=({words_bash}); COMP_CWORD={cword}\n'
               '_htmap_completion htmap\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    out = subprocess.run([bash, "--norc", "--noprofile", "-c", program], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


def test_path_tag_part_completes_in_real_bash(tmp_path):
    htmap.map(funcs.double, [1], tag="pc-map")
    # bash splits `htmap path pc-map:ev` at ':' (COMP_WORDBREAKS) and replaces only the last word
    assert _bash_complete(tmp_path, ["htmap", "path", "pc-map", ":", "ev"], 4) == ["events"]
    assert _bash_complete(tmp_path, ["htmap", "path", "pc-map", ":"], 3) == [
        ":map", ":tag", ":events", ":logs", ":inputs", ":outputs", ":output_files"]
    assert _bash_complete(tmp_path, ["htmap", "path", "pc-"], 2) == ["pc-map"]


@pytest.mark.parametrize("stream,first", [("stdout", "first line"), ("stderr", "first err")])
def test_follow_prints_a_running_components_output_as_it_comes(tmp_path, stream, first):
    import os
    import queue
    import subprocess
    import sys
    import threading
    from pathlib import Path

    gate = tmp_path / "gate"
    m = htmap.map(funcs.print_wait_print, [str(gate)], tag=f"follow-{stream}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "htmap", stream, m.tag, "0", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=T) == first + "\n"  # shown while the component still runs
        assert proc.poll() is None
        gate.touch()
        assert proc.wait(timeout=T) == 0, proc.stderr.read()
    finally:
        gate.touch()
        if proc.poll() is None:
            proc.kill()
    reader.join(T)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    if stream == "stdout":
        assert rest == ["second line\n"]
