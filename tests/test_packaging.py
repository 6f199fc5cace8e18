"""Issue 13.5: the distribution htmap-ng (license, version in one place, URLs, classifiers, py.typed,
extras) and install hints that never install PyPI's archived "htmap"."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import htmap
from htmap import install

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_distribution_name_license_and_files(project):
    meta = project["project"]
    assert meta["name"] == "htmap-ng"
    assert meta["license"] == "Apache-2.0"  # an SPDX expression, not a table
    assert meta["license-files"] == ["LICENSE", "NOTICE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert "htcondor/htmap" in (ROOT / "NOTICE").read_text()  # HTMap 0.6's notice carried on
    assert not [c for c in meta["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only
    assert "Typing :: Typed" in meta["classifiers"]
    assert meta["urls"] and all(u.startswith("https://") for u in meta["urls"].values())


def test_version_is_kept_in_one_place(project):
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "htmap.__version__"}
    assert htmap.version() == f"htmap version {htmap.__version__}"


def test_package_is_typed(project):
    assert (ROOT / "htmap" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["htmap"]


def test_extras_and_hints_agree(project):
    extras = project["project"]["optional-dependencies"]
    assert any(r.startswith("ipywidgets") for r in extras["jupyter"])
    for name, requirements in install.EXTRAS.items():
        assert tuple(extras[name]) == requirements
        hint = install.hint(name)
        assert all(f"'{r}'" in hint for r in requirements) and "htmap-ng" in hint and "htmap[" not in hint


# "pip install htmap", "pip install 'htmap[plot]'", "htmap[htcondor]": what would fetch HTMap 0.6.1
ARCHIVED = re.compile(r"""pip3? install\s+(?:-\S+\s+)*['"]?htmap(?![\w-])|['"\s(`]htmap\[""")


def test_the_archived_pattern_catches_what_it_must():
    for bad in ("pip install htmap", "pip install 'htmap[plot]'", "pip3 install -U htmap", " htmap[htcondor]"):
        assert ARCHIVED.search(bad), bad
    for good in ("pip install htmap-ng", "pip install '.[plot]'", install.hint("plot"), "import htmap"):
        assert not ARCHIVED.search(good), good


def test_no_hint_or_doc_installs_the_archived_htmap():
    files = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in ("htmap", "docs", "scripts", "examples", "benchmarks", ".ci"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".sh", ".toml", "")]
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0)!r}" for p in files
                 for m in ARCHIVED.finditer(p.read_text(errors="replace"))]
    assert offenders == []
