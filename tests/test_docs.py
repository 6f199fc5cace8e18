"""Every public function, class, method and property of htmap has a numpy-style docstring.

"Public" is what ``htmap`` exports (``htmap.__all__``), every exception class of
``htmap.exceptions``, and the public methods and properties of those classes (dunder methods
excluded). A callable that takes parameters must have a ``Parameters`` section naming each of
them; one with a return annotation other than ``None`` must have a ``Returns`` (or ``Yields``)
section.
"""
import inspect
import re

import pytest

import htmap
from htmap import exceptions, maps, options

SECTION = re.compile(r"^\s*(Parameters|Returns|Yields|Raises|Attributes|Examples|Notes|See Also|Warns|Other Parameters)"
                     r"\s*\n\s*-{3,}\s*$", re.M)


def sections(doc):
    """``{section title: section text}`` of a numpy-style docstring."""
    doc = inspect.cleandoc(doc or "")
    found = list(SECTION.finditer(doc))
    return {m.group(1): doc[m.end():found[i + 1].start() if i + 1 < len(found) else len(doc)]
            for i, m in enumerate(found)}


def documented_names(section_text):
    """Parameter names of a Parameters section: ``name``, ``name : type``, ``*args``, ``a, b : int``."""
    names = set()
    for line in section_text.splitlines():
        if line and not line[0].isspace():
            head = line.split(" : ")[0]
            for name in head.split(","):
                names.add(name.strip().lstrip("*"))
    return names


def parameter_names(func):
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]


def check_callable(qualname, func, doc=None, problems=None, returns_needed=True):
    doc = func.__doc__ if doc is None else doc
    if not doc or not doc.strip():
        problems.append(f"{qualname}: no docstring")
        return
    found = sections(doc)
    params = parameter_names(func)
    if params:
        if "Parameters" not in found:
            problems.append(f"{qualname}: takes {params} but has no Parameters section")
        else:
            missing = [p for p in params if p not in documented_names(found["Parameters"])]
            if missing:
                problems.append(f"{qualname}: Parameters section does not describe {missing}")
    if returns_needed:
        try:
            ret = inspect.signature(func).return_annotation
        except (TypeError, ValueError):
            ret = inspect.Signature.empty
        if ret not in (inspect.Signature.empty, None, "None") and not ({"Returns", "Yields"} & set(found)):
            problems.append(f"{qualname}: returns {ret} but has no Returns section")


def from_htmap(obj):
    return (getattr(obj, "__module__", None) or "").startswith("htmap")


def public_objects():
    objs = {}
    for name in htmap.__all__:
        obj = getattr(htmap, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            objs[f"htmap.{name}"] = obj
    for name, obj in vars(exceptions).items():
        if inspect.isclass(obj) and issubclass(obj, BaseException) and from_htmap(obj):
            objs[f"htmap.exceptions.{name}"] = obj
    # the base of the types of Map.stdout / Map.stderr (htmap.MapStdOut, htmap.MapStdErr)
    objs["htmap.maps.MapStdX"] = maps.MapStdX
    return objs


def check_class(qualname, cls, problems):
    if not cls.__doc__ or not cls.__doc__.strip():
        problems.append(f"{qualname}: no class docstring")
        return
    for klass in cls.__mro__:  # the __init__ that runs, if it is ours, is documented in the class docstring
        if "__init__" in vars(klass):
            init = vars(klass)["__init__"]
            if from_htmap(klass) and parameter_names(init):
                check_callable(f"{qualname}.__init__", init, doc=cls.__doc__ + "\n" + (init.__doc__ or ""),
                               problems=problems, returns_needed=False)
            break
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not from_htmap(owner):
            continue  # inherited from Exception, UserDict, Enum, ...
        attr = vars(owner)[name]
        if isinstance(attr, property):
            if not (attr.__doc__ or "").strip():
                problems.append(f"{qualname}.{name}: property without a docstring")
        elif isinstance(attr, (classmethod, staticmethod)):
            check_callable(f"{qualname}.{name}", getattr(cls, name), problems=problems)
        elif inspect.isfunction(attr):
            check_callable(f"{qualname}.{name}", attr, problems=problems)


def test_every_public_name_has_a_numpy_docstring():
    problems = []
    for qualname, obj in sorted(public_objects().items()):
        if inspect.isclass(obj):
            check_class(qualname, obj, problems)
        else:
            check_callable(qualname, obj, problems=problems)
    assert not problems, "missing or incomplete docstrings:\n" + "\n".join(problems)


def test_the_checker_catches_what_it_should():
    problems = []

    def undocumented(a):
        return a

    def no_params(a, *rest) -> int:
        """Something.

        Returns
        -------
        int
        """

    def partial(a, b):
        """Something.

        Parameters
        ----------
        a : int
            The a.
        """

    def good(a, b, *rest, **kw) -> int:
        """Something.

        Parameters
        ----------
        a, b : int
            Two numbers.
        *rest
            More.
        **kw
            Keywords.

        Returns
        -------
        int
            Their sum.
        """

    for f in (undocumented, no_params, partial, good):
        check_callable(f.__name__, f, problems=problems)
    assert [p.split(":")[0] for p in problems] == ["undocumented", "no_params", "partial"]


# every option htmap itself interprets, on every engine
INTERPRETED_OPTIONS = {
    "fixed_input_files", "input_files", "output_remaps", "custom_options",
    "request_memory", "request_disk", "request_cpus", "max_runtime", "max_retries",
    "retry_memory_factor", "retry_exceptions", "requirements", "max_running", "credentials",
    "partition", "account", "qos",
} | set(options.NORMALIZERS) | set(options.WHOLE_MAP_OPTIONS)


@pytest.mark.parametrize("name", sorted(INTERPRETED_OPTIONS))
def test_map_options_lists_its_options(name):
    params = inspect.signature(htmap.MapOptions).parameters
    assert name in params, f"MapOptions does not take {name!r} as a named keyword argument"
    assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert name in documented_names(sections(htmap.MapOptions.__doc__).get("Parameters", "")), \
        f"MapOptions' docstring does not describe {name!r}"


def test_map_options_named_keywords_behave_like_before():
    opts = htmap.MapOptions(request_memory="2GB", max_retries=2, docker_image="python:3.12")
    assert dict(opts) == {"request_memory": "2GB", "max_retries": 2, "docker_image": "python:3.12"}
    assert dict(htmap.MapOptions()) == {}
    assert htmap.MapOptions(retry_exceptions=OSError)["retry_exceptions"] == ["OSError"]
    assert dict(htmap.MapOptions(request_memory=None, partition=None)) == {}  # a named option left at None: not set
    with pytest.raises(exceptions.InvalidOption):
        htmap.MapOptions(request_memory="lots")
    with pytest.raises(exceptions.ReservedOptionKeyword):
        htmap.MapOptions(arguments="x")


# -- the documentation site, the changelog and the citation file -------------------------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def nav_pages(nav):
    for entry in nav:
        if isinstance(entry, str):
            yield entry
        else:
            for value in entry.values():
                yield from ([value] if isinstance(value, str) else nav_pages(value))


def test_every_docs_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = set(nav_pages(config["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - in_nav == set(), "add these pages to the nav in mkdocs.yml"
    assert in_nav - pages == set(), "the nav names pages that do not exist"


def test_the_api_reference_shows_every_public_name():
    shown = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        shown.update(re.findall(r"^::: (\S+)", page.read_text(), re.M))
    assert "htmap.exceptions" in shown
    missing = [f"htmap.{n}" for n, obj in ((n, getattr(htmap, n)) for n in htmap.__all__)
               if (inspect.isclass(obj) or inspect.isfunction(obj)) and f"htmap.{n}" not in shown]
    assert not missing, f"not in docs/api/*.md: {missing}"


def test_the_docs_build_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    import subprocess

    result = subprocess.run(["bash", str(ROOT / "scripts" / "build-docs.sh"), str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    options = (tmp_path / "site" / "api" / "options" / "index.html").read_text()
    assert "request_memory" in options and "retry_exceptions" in options


def test_changelog_and_citation():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and "keepachangelog.com" in changelog
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # required by the CFF 1.2.0 schema
        assert citation[key]
    assert str(citation["version"]) == htmap.__version__
