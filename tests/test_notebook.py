"""How a map looks in Jupyter (its HTML repr) and in a picture (Map.plot / htmap plot)."""
from __future__ import annotations

import sys
from html.parser import HTMLParser

import pytest

import htmap
from htmap.state import ComponentStatus
from tests.helpers import wait_until
from tests.test_cli import gated, ok, odd_fails, run

VOID = {"br", "hr", "img", "input", "meta", "link", "wbr"}


class Page(HTMLParser):
    """Collects text, elements with attributes, and checks that every element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack = []
        self.elements = []
        self.text = []
        self.errors = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join("".join(self.text).split())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return page


def bar_segments(page: Page):
    out = {}
    for tag, attrs in page.elements:
        if tag == "div" and "data-status" in attrs:
            style = dict(part.split(":", 1) for part in attrs["style"].split(";") if ":" in part)
            width = float(style["width"].strip().rstrip("%"))
            out[attrs["data-status"]] = (int(attrs["data-count"]), width)
    return out


def test_html_repr_of_a_finished_map_with_errors():
    m = htmap.map(odd_fails, range(4), tag="nb")
    m.wait(timeout=60, errors_ok=True)
    page = parse(m._repr_html_())
    text = page.plain
    assert "Map nb" in text and "4 components" in text and "local engine" in text
    segments = bar_segments(page)
    assert {s: c for s, (c, _) in segments.items()} == {"COMPLETED": 2, "ERRORED": 2}
    assert sum(w for _, w in segments.values()) == pytest.approx(100, abs=0.01)
    assert segments["ERRORED"][1] == pytest.approx(50, abs=0.01)
    assert "2 completed" in text and "2 errored" in text
    # hints to the errors: which components, what they raised, where to look
    assert "2 components errored (1, 3)" in text
    assert "component 1: ValueError: odd input 1" in text and "component 3: ValueError: odd input 3" in text
    assert "htmap errors nb" in text and "m.errors" in text

    # the plain repr stays short
    assert repr(m) == "Map(tag='nb')"


def test_html_repr_of_held_running_and_done_maps(tmp_path):
    gate = tmp_path / "gate"
    m = htmap.map(gated, [str(gate)] * 2, tag="nb-held")
    wait_until(lambda: m.components_by_status().get(ComponentStatus.RUNNING), 30, message="a running component")
    text = parse(m._repr_html_()).plain
    assert "still to run" in text and "m.wait(show_progress_bar=True)" in text

    m.hold()
    wait_until(lambda: len(m.components_by_status().get(ComponentStatus.HELD, ())) == 2, 30, message="holds")
    page = parse(m._repr_html_())
    text = page.plain
    assert bar_segments(page) == {"HELD": (2, pytest.approx(100, abs=0.01))}
    assert "2 components held (0, 1)" in text and "held by the user" in text
    assert "htmap reasons nb-held" in text and "m.release()" in text

    m.release()
    gate.touch()
    m.wait(timeout=60)
    text = parse(m._repr_html_()).plain
    assert "All components completed" in text and "components held" not in text

    m.remove()
    text = parse(m._repr_html_()).plain
    assert "nb-held" in text and "removed" in text


def test_html_repr_never_raises(monkeypatch):
    m = htmap.map(odd_fails, [0], tag="nb-broken")

    def broken():
        raise OSError("the map's files are gone")

    monkeypatch.setattr(m, "status_counts", broken)
    text = parse(m._repr_html_()).plain
    assert "nb-broken" in text and "status unavailable: OSError: the map's files are gone" in text


def raises_markup(x):
    raise ValueError("<script>alert('x')</script> & <b>bold</b>")


def test_html_escapes_what_it_shows():
    m = htmap.map(raises_markup, [1], tag="nb-esc")
    m.wait(timeout=60, errors_ok=True)
    html = m._repr_html_()
    assert "<script" not in html and "<b>" not in html
    assert "ValueError: <script>alert('x')</script> & <b>bold</b>" in parse(html).plain


def is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (htmap-ng's plot extra)")
    m = htmap.map(odd_fails, range(6), tag="pic")
    m.wait(timeout=60, errors_ok=True)
    path = tmp_path / "map.png"
    fig = m.plot(path)
    assert path.stat().st_size > 5000 and is_png(path)
    axes = fig.get_axes()
    assert len(axes) == 2 and "pic" in axes[0].get_title()
    assert sum(len(c) for c in axes[0].containers) >= 6  # a bar per component that ran (idle and running)

    out = tmp_path / "cli.png"
    assert ok("plot", "pic", "-o", out).stdout.strip() == str(out)
    assert out.stat().st_size > 5000 and is_png(out)


def test_plot_of_a_map_still_running(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (htmap-ng's plot extra)")
    gate = tmp_path / "gate"
    m = htmap.map(gated, [str(gate)] * 3, tag="pic-live")
    wait_until(lambda: m.components_by_status().get(ComponentStatus.RUNNING), 30, message="a running component")
    path = tmp_path / "live.png"
    m.plot(path)
    assert path.stat().st_size > 0 and is_png(path)
    gate.touch()


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    m = htmap.map(odd_fails, [0], tag="nopic")
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'matplotlib>=3.5' \(htmap-ng's \"plot\" extra") as info:
        m.plot(tmp_path / "x.png")
    assert isinstance(info.value, htmap.exceptions.HTMapException)
    result = run("plot", "nopic", "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and "pip install 'matplotlib>=3.5'" in result.stderr and "htmap[" not in result.stderr
    assert result.stderr.startswith("ERROR: ")
    assert not (tmp_path / "x.png").exists()
