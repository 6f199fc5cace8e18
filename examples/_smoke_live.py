import htmap, time, os
htmap.settings["HTMAP_DIR"] = os.path.join(os.environ["TMPDIR"], "smoke-htmap")
htmap.settings["ENGINE"] = "htcondor"
def double(x): return 2 * x
t = time.time()
m = htmap.map(double, range(10), map_options=htmap.MapOptions(custom_options={"JobFlavour": '"espresso"', "MY.SendCredential": "true"}))
m.wait(show_progress_bar=True, timeout=120)
print(list(m), time.time() - t)
m.hold(); m.release(); m.wait(timeout=60); print("hold/release ok")
m.remove()
m = htmap.map(double, range(3))
print(m._meta if hasattr(m, "_meta") else vars(m).keys())
m.wait(timeout=100)
