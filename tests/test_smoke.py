import htmap


def double(x):
    return 2 * x


def test_map_runs_on_local_engine():
    m = htmap.map(double, range(5), tag="smoke")
    assert list(m.iter(timeout=60)) == [0, 2, 4, 6, 8]
    assert htmap.load("smoke") is m
