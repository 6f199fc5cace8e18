"""Settings layers and MapOptions validation."""
import pytest

import htmap
from htmap import exceptions
from htmap.options import parse_duration, parse_size
from htmap.settings import Settings, build_settings, reset_for_tests


def test_dotted_keys_and_missing_setting():
    htmap.settings["MAP_OPTIONS.request_memory"] = "2GB"
    assert htmap.settings["MAP_OPTIONS.request_memory"] == "2GB"
    assert htmap.settings["MAP_OPTIONS"]["request_memory"] == "2GB"
    with pytest.raises(exceptions.MissingSetting, match="NOPE.KEY"):
        htmap.settings["NOPE.KEY"]
    assert htmap.settings.get("NOPE.KEY", 5) == 5


def test_precedence_runtime_over_rc_over_env_over_defaults(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".htmaprc").write_text('WAIT_TIME = 3\n[LOCAL]\nMAX_WORKERS = 7\n')
    monkeypatch.setenv("HTMAP_WAIT_TIME", "5")
    monkeypatch.setenv("HTMAP_DELIVERY_METHOD", "shared")
    monkeypatch.setenv("HTMAP_LOCAL__IDLE_EXIT_SECONDS", "4")
    s = build_settings()
    assert s["WAIT_TIME"] == 3  # rc beats environment
    assert s["LOCAL.MAX_WORKERS"] == 7
    assert s["DELIVERY_METHOD"] == "shared"  # environment beats defaults
    assert s["LOCAL.IDLE_EXIT_SECONDS"] == 4  # numbers from the environment are numbers
    assert s["ENGINE"] == "auto"  # default
    s["WAIT_TIME"] = 9  # runtime beats all
    assert s["WAIT_TIME"] == 9


def test_environment_htmap_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HTMAP_DIR", str(tmp_path / "elsewhere"))
    assert build_settings()["HTMAP_DIR"] == str(tmp_path / "elsewhere")


def test_replace_append_prepend_to_dict_save_load(tmp_path):
    s = Settings({"A": 1})
    s.append({"A": 0, "B": 2})
    s.prepend(Settings({"C": {"D": 4}}))
    assert s.to_dict() == {"A": 1, "B": 2, "C": {"D": 4}}
    path = tmp_path / "saved.toml"
    s.save(path, layer=0)
    assert Settings.load(path)["C.D"] == 4
    other = Settings({"X": True})
    s.replace(other)
    assert s.to_dict() == {"X": True}


def test_save_writes_rc_file_used_by_new_settings(tmp_path):
    htmap.settings["MAP_OPTIONS.request_memory"] = "3GB"
    htmap.settings["LOCAL.MAX_WORKERS"] = 1
    path = htmap.settings.save()
    assert path == tmp_path / "home" / ".htmaprc"
    assert path.stat().st_mode & 0o777 == 0o600
    reset_for_tests()
    assert htmap.settings["MAP_OPTIONS.request_memory"] == "3GB"
    assert htmap.settings["LOCAL.MAX_WORKERS"] == 1


def test_invalid_rc_file_names_the_file(tmp_path):
    (tmp_path / "home" / ".htmaprc").write_text("this is not = = toml")
    s = build_settings()  # importing htmap still works (issue 13.4); reading a setting says what is wrong
    with pytest.raises(exceptions.SettingsFileError, match=".htmaprc is not valid TOML"):
        s["WAIT_TIME"]


@pytest.mark.parametrize("text, mb", [("128MB", 128), ("2 GB", 2048), ("1GB", 1024), (512, 512), ("1.5G", 1536),
                                      ("1024KB", 1), ("100", 100)])
def test_memory_sizes(text, mb):
    assert parse_size(text, "MB", "request_memory") == mb


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "-5GB", "0", "", True, "GB"])
def test_nonsense_sizes_are_rejected(text):
    with pytest.raises(exceptions.HTMapException, match="request_memory"):
        parse_size(text, "MB", "request_memory")


@pytest.mark.parametrize("text, seconds", [(90, 90), ("90s", 90), ("20m", 1200), ("2h", 7200), ("1h30m", 5400),
                                           ("1d", 86400), ("01:30:00", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_reserved_keys_rejected_case_insensitively():
    for key in ["executable", "Executable", "ARGUMENTS", "log"]:
        with pytest.raises(exceptions.ReservedOptionKeyword, match=key):
            htmap.MapOptions(**{key: "x"})
    with pytest.raises(exceptions.ReservedOptionKeyword):
        htmap.MapOptions(custom_options={"+IsHTMapJob": "true"})


def test_custom_option_key_forms_are_normalized():
    opts = htmap.MapOptions(custom_options={"foo": "1", "+bar": "2", "MY.baz": "3"})
    assert opts.custom_options == {"foo": "1", "bar": "2", "baz": "3"}


def test_resolve_splits_fixed_and_per_component():
    from htmap.options import resolve

    fixed, per = resolve(htmap.MapOptions(request_memory="1GB", request_disk=["1MB", "2MB"]), 2)
    assert fixed == {"request_memory": 1024}
    assert per == {"request_disk": [1024, 2048]}
    with pytest.raises(exceptions.MisalignedInputData, match="request_disk"):
        resolve(htmap.MapOptions(request_disk=["1MB", "2MB"]), 3)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("1min", 60), ("20m", 1200), ("2h", 7200), ("1d", 86400),
                                           ("01:30:00", 5400), ("1 hour", 3600), ("2 days", 172800),
                                           ("1h 30min", 5400), ("5 minutes", 300), ("1-00:00:00", 86400)])
def test_durations_in_the_forms_people_write(text, seconds):
    """Issue 13.6: every engine takes resolve()'s seconds, so these work on each of them."""
    from htmap.options import resolve

    assert parse_duration(text) == seconds
    assert resolve(htmap.MapOptions(max_runtime=text), 1)[0] == {"max_runtime": seconds}


@pytest.mark.parametrize("text", ["1 fortnight", "soon", "", "h", "1h x", "-5", "0", "00:00", "1:2", True])
def test_other_durations_are_refused_with_the_accepted_forms(text):
    with pytest.raises(exceptions.InvalidOption) as e:
        htmap.MapOptions(max_runtime=text)
    assert "is not a duration" in str(e.value)
    for form in ("'90s'", "'1min'", "'20m'", "'2h'", "'1d'", "'01:30:00'", "'1 hour'"):
        assert form in str(e.value)


def test_settings_with_control_characters_are_saved_as_valid_toml(tmp_path):
    """Issue 13.4: the file is written by tomli-w, so any string reads back the same."""
    import tomllib

    odd = "a\rb\x01c\x7f\"quoted\" \\ back\nslash\ttab \u00e9"
    htmap.settings["MAP_OPTIONS.custom"] = odd
    htmap.settings["TRANSPLANT.DIR"] = tmp_path / "a path"
    htmap.settings["LOCAL.MAX_WORKERS"] = 3
    path = htmap.settings.save()
    data = tomllib.loads(path.read_text())
    assert data["MAP_OPTIONS"]["custom"] == odd
    assert data["TRANSPLANT"]["DIR"] == str(tmp_path / "a path") and data["LOCAL"]["MAX_WORKERS"] == 3
    assert build_settings()["MAP_OPTIONS.custom"] == odd


def test_a_broken_rc_file_gives_one_error_line_and_help_still_works(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    rc = tmp_path / "home" / ".htmaprc"
    rc.write_bytes(b'WAIT_TIME = "a\rb"\x01\n[[[')
    repo = Path(__file__).parent.parent
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(repo)}

    def htmap_cli(*args):
        return subprocess.run([sys.executable, "-m", "htmap", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    for ok in (["--help"], ["--version"], ["status", "--help"]):
        result = htmap_cli(*ok)
        assert result.returncode == 0 and result.stderr == "", (ok, result.stderr)
    result = htmap_cli("tags")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"ERROR: the settings file {rc} is not valid")
    imported = subprocess.run([sys.executable, "-c", "import htmap; print(htmap.USER_SETTINGS.file_error)"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0 and str(rc) in imported.stdout
