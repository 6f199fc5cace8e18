"""HTMap 0.6 top-level names beyond mapping: version, settings layers, transplant installs."""
import os
import subprocess
import sys
from pathlib import Path

import htmap
from htmap.engines.htcondor import delivery
from tests.helpers import run_cli as run

REPO = Path(__file__).parent.parent


def test_version_and_version_info():
    assert htmap.version() == f"htmap version {htmap.__version__}"
    major, minor, micro, level = htmap.version_info()
    assert f"{major}.{minor}.{micro}" == htmap.__version__[: len(f"{major}.{minor}.{micro}")]
    assert isinstance(level, str)


def test_user_settings_are_the_settings_file(tmp_path):
    home = tmp_path / "userhome"
    home.mkdir()
    (home / ".htmaprc").write_text('WAIT_TIME = 7\n[LOCAL]\nMAX_WORKERS = 3\n')
    out = subprocess.run(
        [sys.executable, "-c", "import htmap; print(htmap.USER_SETTINGS['WAIT_TIME'], "
                               "htmap.USER_SETTINGS['LOCAL.MAX_WORKERS'], 'HTMAP_DIR' in htmap.USER_SETTINGS)"],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("HTMAP")} | {"HOME": str(home)},
    ).stdout.split()
    assert out == ["7", "3", "False"]


def test_replacing_settings_with_the_base_settings_leaves_them_untouched():
    default_wait = htmap.BASE_SETTINGS["WAIT_TIME"]
    htmap.settings.replace(htmap.BASE_SETTINGS)
    assert htmap.settings["WAIT_TIME"] == default_wait
    htmap.settings["WAIT_TIME"] = default_wait + 5
    assert htmap.settings["WAIT_TIME"] == default_wait + 5
    assert htmap.BASE_SETTINGS["WAIT_TIME"] == default_wait


def fake_prefix(root: Path) -> Path:
    """A Python prefix with one installed distribution, fakepkg 1.2."""
    prefix = root / "prefix"
    (prefix / "bin").mkdir(parents=True)
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "fakepkg-1.2.dist-info").mkdir(parents=True)
    (site / "fakepkg-1.2.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.2\n")
    (site / "fakepkg.py").write_text("X = 1\n")
    return prefix


def test_transplant_installs_are_listed_and_removed(tmp_path, isolated_htmap):
    assert htmap.transplants() == ()
    assert "no transplant installs" in htmap.transplant_info()
    prefix = fake_prefix(tmp_path)
    tarball, packed = delivery.pack_transplant(prefix, isolated_htmap / "transplants")
    assert packed
    (install,) = htmap.transplants()
    assert install.path == tarball
    assert install.hash == delivery.prefix_fingerprint(prefix)
    assert install.packages == ("fakepkg==1.2",)
    assert install.size == tarball.stat().st_size > 0
    info = htmap.transplant_info()
    assert "# 0" in info and install.hash in info and "fakepkg==1.2" in info

    listed = run("transplants", "info")
    assert listed.exit_code == 0 and "fakepkg==1.2" in listed.output
    wrong = run("transplants", "remove", "3")
    assert wrong.exit_code != 0 and "no transplant install number 3" in wrong.stderr
    assert tarball.exists()
    removed = run("transplants", "remove", "0")
    assert removed.exit_code == 0, removed.output
    assert not tarball.exists() and not delivery.packages_path(tarball).exists()
    assert htmap.transplants() == ()


def test_transplant_dir_setting_is_where_installs_are_found(tmp_path):
    elsewhere = tmp_path / "shared-transplants"
    htmap.settings["TRANSPLANT.DIR"] = str(elsewhere)
    delivery.pack_transplant(fake_prefix(tmp_path), elsewhere)
    (install,) = htmap.transplants()
    assert install.path.parent == elsewhere
