"""Teardown on every path out of a test run.

Context managers (`with NetPair()`, `with tmpfs()`) clean up on normal exit
and on exceptions, KeyboardInterrupt included.  For the rest, each module
registers here a function that undoes whatever it still holds:

- at interpreter exit (atexit);
- on SIGTERM, when nobody else handles it: the functions run, then the
  process dies of SIGTERM as it would have without us.

A run killed with SIGKILL cannot clean up; netns.NetPair sweeps the
namespaces such runs left behind (their pid is gone) the next time.
"""

import atexit
import os
import signal
import threading

_fns = []
_lock = threading.Lock()
_installed = False


def register(fn):
    """Runs fn() at exit and on SIGTERM (once each; exceptions ignored)."""
    with _lock:
        if fn not in _fns:
            _fns.append(fn)
    _install_sigterm()


def run_all():
    with _lock:
        fns = list(reversed(_fns))
    for fn in fns:
        try:
            fn()
        except Exception:
            pass


atexit.register(run_all)


def pid_running(pid):
    """True when pid runs (a zombie, killed but not yet reaped, does not).
    Used to tell leftovers of dead runs from those of live ones."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _on_term(signum, frame):
    run_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_sigterm():
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_term)
