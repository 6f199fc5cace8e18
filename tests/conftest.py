"""Every test gets its own HOME and HTMAP_DIR, and fresh settings, so tests never share maps."""
from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import supervisor_pids

import htmap
from htmap.settings import reset_for_tests


def pytest_collection_modifyitems(config, items):
    """Skip tests of another engine's behaviour (``@pytest.mark.engines("local", ...)``). On a
    cluster (HTMAP_TEST_ENGINE, the live pool) the execute side cannot import the tests: their
    functions travel by value."""
    engine = os.environ.get("HTMAP_TEST_ENGINE", "") or "local"
    for item in items:
        marker = item.get_closest_marker("engines")
        if marker is not None and engine not in marker.args:
            item.add_marker(pytest.mark.skip(reason=f"tests {'/'.join(marker.args)} behaviour; "
                                                    f"HTMAP_TEST_ENGINE is {engine}"))
    if engine == "local" and os.environ.get("HTMAP_LIVE_POOL") != "1":
        return
    import cloudpickle

    from tests import funcs

    for module in {item.module for item in items} | {funcs}:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture(autouse=True)
def isolated_htmap(tmp_path, monkeypatch):
    """A private HOME and HTMAP_DIR; stops this test's local supervisor afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    htmap_dir = tmp_path / "htmap"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HTMAP_DIR", str(htmap_dir))
    engine = os.environ.get("HTMAP_TEST_ENGINE", "local")  # run the core suite on another engine
    monkeypatch.delenv("HTMAPRC", raising=False)
    for name in list(os.environ):
        if name.startswith("HTMAP_") and name != "HTMAP_DIR":
            monkeypatch.delenv(name)
    reset_for_tests()
    htmap.settings["HTMAP_DIR"] = str(htmap_dir)
    htmap.settings["ENGINE"] = engine
    htmap.settings["LOCAL.IDLE_EXIT_SECONDS"] = 2
    yield htmap_dir
    for pid in supervisor_pids(htmap_dir):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
