"""Bad input: a clear error before anything is submitted, and no map directory or tag left."""
import threading

import pytest

import htmap
from htmap import exceptions
from tests import funcs


@pytest.fixture
def nothing_left_behind(isolated_htmap):
    yield
    assert htmap.get_tags() == ()
    maps = isolated_htmap / "maps"
    assert not maps.exists() or list(maps.iterdir()) == []
    tags = isolated_htmap / "tags"
    assert not tags.exists() or list(tags.iterdir()) == []
    queue = isolated_htmap / "local" / "queue"
    assert not queue.exists() or list(queue.iterdir()) == []


def _broken_inputs():
    yield 1
    yield 2
    raise OSError("the input file went away")


def _unpicklable_function():
    lock = threading.Lock()  # a closure over a lock: cloudpickle must pickle it by value, and cannot

    def uses_lock(x):
        with lock:
            return x

    return uses_lock


@pytest.mark.parametrize("call, error, words", [
    (lambda: htmap.map(funcs.double, []), exceptions.EmptyMap, "no inputs"),
    (lambda: htmap.map(funcs.double, [threading.Lock()]), exceptions.CannotPickle, "component 0"),
    (lambda: htmap.map(_unpicklable_function(), [1]), exceptions.CannotPickle, "function"),
    (lambda: htmap.map(funcs.double, [1], tag="a/b"), exceptions.InvalidTag, "a/b"),
    (lambda: htmap.map(funcs.double, [1], tag=".."), exceptions.InvalidTag, ".."),
    (lambda: htmap.map(funcs.double, [1], tag="has space"), exceptions.InvalidTag, "has space"),
    (lambda: htmap.map(funcs.double, [1], tag=""), exceptions.InvalidTag, "empty"),
    (lambda: htmap.map(funcs.double, [1, 2], map_options=htmap.MapOptions(request_memory=["1GB"])),
     exceptions.MisalignedInputData, "request_memory"),
    (lambda: htmap.map(funcs.double, [1], map_options=htmap.MapOptions(request_memory="lots")),
     exceptions.InvalidOption, "request_memory"),
    (lambda: htmap.map(funcs.double, _broken_inputs()), OSError, "went away"),
])
def test_bad_input_is_rejected_cleanly(nothing_left_behind, call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_reserved_option(nothing_left_behind):
    with pytest.raises(exceptions.ReservedOptionKeyword):
        htmap.map(funcs.double, [1], map_options=htmap.MapOptions(arguments="x"))


def test_unknown_delivery_method(nothing_left_behind):
    htmap.settings["DELIVERY_METHOD"] = "pigeon"
    with pytest.raises(exceptions.UnknownPythonDeliveryMethod, match="pigeon"):
        htmap.map(funcs.double, [1])


def test_unknown_engine(nothing_left_behind):
    htmap.settings["ENGINE"] = "quantum"
    with pytest.raises(exceptions.UnknownEngine, match="quantum"):
        htmap.map(funcs.double, [1])


def test_missing_setting(nothing_left_behind):
    htmap.settings.maps = [m for m in htmap.settings.maps]
    for layer in htmap.settings.maps:
        layer.pop("DELIVERY_METHOD", None)
    with pytest.raises(exceptions.MissingSetting, match="DELIVERY_METHOD"):
        htmap.map(funcs.double, [1])


def test_tag_in_use(isolated_htmap):
    m = htmap.map(funcs.double, [1], tag="used")
    with pytest.raises(exceptions.TagAlreadyExists, match="used"):
        htmap.map(funcs.double, [1], tag="used")
    assert htmap.get_tags() == ("used",)
    assert len(list((isolated_htmap / "maps").iterdir())) == 1
    m.wait(timeout=60)


def test_too_many_cpus_for_the_local_engine(nothing_left_behind):
    with pytest.raises(exceptions.HTMapException, match="request_cpus"):
        htmap.map(funcs.double, [1], map_options=htmap.MapOptions(request_cpus=10_000))
