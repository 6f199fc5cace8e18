"""A real map on the local engine: ten components, run as processes on this machine."""
import htmap


def double(x):
    return 2 * x


if __name__ == "__main__":
    htmap.settings["ENGINE"] = "local"  # the demo needs no cluster
    htmap.remove("demo-double")  # from an earlier run, if any
    m = htmap.map(double, range(10), tag="demo-double")
    m.wait(show_progress_bar=True)
    print(list(m))
    print(htmap.status())
    m.remove()
