"""The notebook view of a map (issue 13.8): a just-submitted map, dark themes, hold hints, the
progress bar's end and postfix, held runs in the plot, and the documented plot default."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import htmap
from htmap import html, plotting, progress
from htmap.state import ComponentStatus
from tests import funcs
from tests.helpers import wait_until
from tests.test_notebook import parse

T = 60


def test_a_just_submitted_map_shows_submitted_not_unknown(monkeypatch):
    m = htmap.map(funcs.double, range(12), tag="fresh")
    counts = {s: 0 for s in ComponentStatus}
    counts[ComponentStatus.UNKNOWN] = 12  # no event from the engine yet
    monkeypatch.setattr(m, "status_counts", lambda: counts)
    monkeypatch.setattr(m, "components_by_status", lambda: {ComponentStatus.UNKNOWN: tuple(range(12))})
    text = parse(m._repr_html_()).plain
    assert "12 submitted" in text and "unknown" not in text.lower()
    assert "12 still to run" in text


def test_the_card_uses_jupyters_theme_variables():
    m = htmap.map(funcs.fail_on, range(4), tag="themed")
    m.wait(timeout=T, errors_ok=True)
    page = m._repr_html_()
    assert "var(--jp-ui-font-color1" in page and "var(--jp-layout-color2" in page
    status_colors = set(html.STATUS_COLORS.values())
    for prop, value in re.findall(r"(?<![-\w])(color|background)\s*:\s*([^;\"]+)", page):
        value = value.strip()
        assert value.startswith("var(--jp-") or value in status_colors, f"{prop}: {value} ignores the theme"


@pytest.fixture
def held_after_running(tmp_path):
    """Component 0 runs for a second and is held (max_runtime); component 1 completes."""
    done = tmp_path / "exists"
    done.touch()
    m = htmap.map(funcs.wait_for_file, [str(tmp_path / "never"), str(done)], tag="runtime-held",
                  map_options=htmap.MapOptions(max_runtime=1))
    wait_until(lambda: m.components_by_status().get(ComponentStatus.HELD) == (0,), T, message="component 0 held")
    yield m
    m.remove()


def test_the_hold_hint_names_the_component_once(held_after_running):
    text = parse(held_after_running._repr_html_()).plain
    assert "component 0" in text and "component 0: component 0" not in text


class Recorder:
    """Stands in for tqdm: remembers where the bar ended and its postfix."""

    def __init__(self, tag, total):
        self.n, self.total, self.postfix, self.closed = 0, total, {}, False

    def update(self, k):
        self.n += k

    def set_postfix(self, postfix, refresh=True):
        self.postfix = dict(postfix)

    def close(self):
        self.closed = True


def test_progress_bar_ends_full_with_holds_ok_and_shows_held_and_errored(held_after_running, monkeypatch):
    bars = []
    monkeypatch.setattr(progress, "progress_bar", lambda tag, total: bars.append(Recorder(tag, total)) or bars[-1])
    held_after_running.wait(timeout=T, holds_ok=True, show_progress_bar=True)
    assert bars[-1].n == bars[-1].total == 2 and bars[-1].closed
    assert bars[-1].postfix == {"held": 1}
    m = htmap.map(funcs.fail_on, range(4), tag="errs-bar")
    m.wait(timeout=T, errors_ok=True, show_progress_bar=True)
    assert bars[-1].n == 4 and bars[-1].postfix == {"errored": 1}


def test_a_held_run_is_drawn(held_after_running, tmp_path):
    data = plotting.timeline(held_after_running)
    assert data["status"][0] is ComponentStatus.HELD
    assert data["run"][0] is not None and data["run"][0][1] >= 0.5  # it ran about a second
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'htmap[plot]')")
    fig = held_after_running.plot(tmp_path / "held.png")
    labels = [t.get_text() for t in fig.get_axes()[0].get_legend().get_texts()]
    assert "ran, held" in labels


def test_the_documented_plot_default_is_the_codes():
    docs = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    said = re.search(r"`max_components`[^)]*default (\d+)", docs)
    assert said and int(said.group(1)) == plotting.DEFAULT_MAX_COMPONENTS
