"""htmap.map / starmap / build_map / mapped on the real local engine."""
import re

import pytest

import htmap
from htmap import exceptions
from tests import funcs

T = 60


def test_map_returns_outputs_in_order():
    m = htmap.map(funcs.double, range(6), tag="doubles")
    assert list(m.iter(timeout=T)) == [0, 2, 4, 6, 8, 10]
    assert m.tag == "doubles" and not m.is_transient and len(m) == 6


def test_starmap_zips_longest_with_empty_defaults():
    m = htmap.starmap(funcs.identity, args=[(1,), (2, 3)], kwargs=[{"a": 1}, {}, {"b": 2}], tag="star")
    assert list(m.iter(timeout=T)) == [((1,), {"a": 1}), ((2, 3), {}), ((), {"b": 2})]


def test_starmap_with_only_kwargs():
    m = htmap.starmap(funcs.add, kwargs=[{"x": 1, "y": 2}, {"x": 5}])
    assert list(m.iter(timeout=T)) == [3, 5]


def test_build_map_records_each_call():
    with htmap.build_map(funcs.add, tag="built") as builder:
        builder(1, y=2)
        builder(3)
        with pytest.raises(exceptions.NoMapYet):
            builder.map
        assert len(builder) == 2
    assert list(builder.map.iter(timeout=T)) == [3, 3]


def test_build_map_submits_nothing_when_block_raises():
    with pytest.raises(RuntimeError):
        with htmap.build_map(funcs.add, tag="broken") as builder:
            builder(1)
            raise RuntimeError("boom")
    assert "broken" not in htmap.get_tags()
    with pytest.raises(exceptions.NoMapYet):
        builder.map


@pytest.mark.parametrize("style", ["bare", "called", "options"])
def test_mapped_decorator_forms(style):
    if style == "bare":
        mf = htmap.mapped(funcs.double)
    elif style == "called":
        mf = htmap.mapped()(funcs.double)
    else:
        mf = htmap.mapped(map_options=htmap.MapOptions(request_memory="500MB"))(funcs.double)
    assert isinstance(mf, htmap.MappedFunction)
    assert mf(21) == 42  # a normal call still works
    assert list(mf.map(range(3), tag=f"mf-{style}").iter(timeout=T)) == [0, 2, 4]
    assert list(mf.starmap(args=[(5,)]).iter(timeout=T)) == [10]
    with mf.build_map() as b:
        b(7)
    assert list(b.map.iter(timeout=T)) == [14]


def test_mapped_options_are_inherited_and_merged_without_mutation():
    deco = htmap.MapOptions(request_memory="10MB", fixed_input_files=["a.txt"], requirements="A",
                            custom_options={"flavour": '"x"'})
    call = htmap.MapOptions(request_disk="1GB", fixed_input_files=["b.txt"], requirements="B")
    merged = htmap.MapOptions.merge(deco, call)
    assert merged["request_memory"] == "10MB"
    assert merged["request_disk"] == "1GB"
    assert merged.fixed_input_files == ["a.txt", "b.txt"]
    assert merged["requirements"] == "(A) && (B)"
    assert merged.custom_options == {"flavour": '"x"'}
    assert deco.fixed_input_files == ["a.txt"] and "request_disk" not in deco
    assert call["requirements"] == "B"
    win = htmap.MapOptions.merge(deco, htmap.MapOptions(request_memory="20MB"))
    assert win["request_memory"] == "20MB"


def test_map_without_tag_is_transient_with_readable_tag():
    m = htmap.map(funcs.double, [1])
    assert re.fullmatch(r"[a-z]+-[a-z]+-[a-z]+", m.tag)
    assert m.is_transient
    m.wait(timeout=T)
    kept = htmap.map(funcs.double, [1], tag="kept")
    kept.wait(timeout=T)
    assert set(htmap.clean()) == {m.tag}
    assert htmap.get_tags() == ("kept",)
    htmap.clean(all=True)
    assert htmap.get_tags() == ()


def test_created_message_only_when_interactive(monkeypatch, capsys):
    from htmap import mapping

    monkeypatch.setattr(mapping, "_interactive", lambda: True)
    m = htmap.map(funcs.double, range(3), tag="loud")
    assert "Created map loud with 3 components" in capsys.readouterr().out
    htmap.map(funcs.double, range(3), tag="hush", quiet=True)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(mapping, "_interactive", lambda: False)
    htmap.map(funcs.double, range(3), tag="script")
    assert capsys.readouterr().out == ""
    m.wait(timeout=T)


def test_runner_sets_environment_for_user_code():
    m = htmap.map(funcs.env_info, range(3))
    assert list(m.iter(timeout=T)) == [("1", "0"), ("1", "1"), ("1", "2")]


def test_inputs_are_streamed_not_held_in_memory():
    """A generator of large inputs: peak traced memory stays far below their total size."""
    import tracemalloc

    item = 2_000_000  # bytes per input; 100 inputs = 200 MB in all

    def inputs():
        for i in range(100):
            yield bytes([i % 256]) * item

    tracemalloc.start()
    try:
        m = htmap.map(len, inputs(), tag="big-inputs")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * item, f"peak {peak / 1e6:.0f} MB while mapping 200 MB of inputs"
    assert m.get(99, timeout=T) == item
