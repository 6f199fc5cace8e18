"""The processes below a worker, found through /proc (Linux).

A component may start processes that leave its process group (``setsid``, daemons that fork
twice). The worker makes itself a child subreaper, so such orphans are re-parented to it and
stay in its tree: memory limits count them, and stopping or killing the tree reaches them.
Stdlib only: the worker loads this file by path, like the runner.
"""
import os
import signal

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process instead of init (Linux >= 3.4)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except Exception:
        return False


def children(pid: int) -> list:
    """Direct children of every thread of ``pid``."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list:
    """Every process below ``pid``, parents before their children."""
    found, seen, todo = [], {pid}, [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


def is_running(pid: int) -> bool:
    """Exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_descendants(pid: int, rounds: int = 10) -> None:
    """SIGKILL everything below ``pid``; again while something is left (it may have forked)."""
    for _ in range(rounds):
        left = [p for p in descendants(pid) if is_running(p)]
        if not left:
            return
        signal_all(left, signal.SIGKILL)


def tree_rss_mb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in MB."""
    pages = 0
    for p in [pid] + descendants(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                pages += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


def end_leftovers() -> None:
    """Kill and reap whatever this process's last component left running below it.

    One ``waitpid`` when nothing is left (the usual case): this runs after every component."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return  # no children at all, running or finished
    kill_descendants(os.getpid())
    reap_children()


def reap_children() -> None:
    """Collect exit statuses of finished children (orphans re-parented to this subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
