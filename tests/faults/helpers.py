"""Process-side fault helpers: a small descriptor limit, a small disk, and
kill -9 (or any other action) once a stream has carried N bytes.

    from faults.helpers import nofile_limit, tmpfs, ByteWatch, kill9_after_bytes

    p = subprocess.Popen(cmd, preexec_fn=nofile_limit(16))   # like `ulimit -n 16`

    with tmpfs("1m") as d:                  # root: mount -t tmpfs -o size=1m
        ...write into d until ENOSPC...     # always unmounted afterwards

    w = kill9_after_bytes(proc, 1 << 20, sink=open(out, "wb"))
    ...                                      # proc is SIGKILLed after 1 MiB of its stdout
    w.join(5)

Every wait here takes a timeout.  Only the standard library is used.
"""

import contextlib
import hashlib
import os
import re
import resource
import signal
import subprocess
import tempfile
import threading
import time

from . import cleanup

__all__ = ["nofile_limit", "tmpfs", "ByteWatch", "kill9_after_bytes",
           "wait_file_size", "wait_all", "sha256_file"]


# ---- descriptors ------------------------------------------------------------

def nofile_limit(n):
    """A preexec_fn for subprocess that sets RLIMIT_NOFILE (soft and hard)
    to n in the child before it execs, like `ulimit -n n`.  Works through
    `ip netns exec` (limits survive exec).  stdin, stdout and stderr count."""
    def preexec():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return preexec


# ---- disk -------------------------------------------------------------------

_mounted = set()
_mounted_lock = threading.Lock()


def _umount(path):
    for argv in (["umount", path], ["umount", "-l", path]):
        r = subprocess.run(argv, capture_output=True, timeout=20)
        if r.returncode == 0:
            return True
    return False


def _umount_all():
    with _mounted_lock:
        paths = list(_mounted)
        _mounted.clear()
    for p in paths:
        _umount(p)
        with contextlib.suppress(OSError):
            os.rmdir(p)


cleanup.register(_umount_all)


def _sweep_stale_mounts():
    """Unmounts tmpfs dirs of runs killed with SIGKILL (their pid is gone)."""
    try:
        with open("/proc/self/mounts") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or parts[2] != "tmpfs":
            continue
        m = re.search(r"/sockit-tmpfs-(\d+)-[^/]+$", parts[1])
        if m and int(m.group(1)) != os.getpid() and not cleanup.pid_running(int(m.group(1))):
            _umount(parts[1])
            with contextlib.suppress(OSError):
                os.rmdir(parts[1])


@contextlib.contextmanager
def tmpfs(size="1m", parent=None):
    """Mounts a tmpfs of `size` (mount's units: 1m, 512k) on a fresh
    directory and yields its path; writes past size fail with ENOSPC.
    Unmounted (lazily if busy) and removed on every path out.  Needs root."""
    _sweep_stale_mounts()
    d = tempfile.mkdtemp(prefix="sockit-tmpfs-%d-" % os.getpid(), dir=parent)
    mounted = False
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size,
                            "tmpfs", d], capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise OSError("mount -t tmpfs %s: %s" % (d, r.stderr.strip()))
        mounted = True
        with _mounted_lock:
            _mounted.add(d)
        yield d
    finally:
        if mounted:
            _umount(d)
            with _mounted_lock:
                _mounted.discard(d)
        with contextlib.suppress(OSError):
            os.rmdir(d)


# ---- acting at a byte count -------------------------------------------------

class ByteWatch:
    """Copies a readable pipe (e.g. Popen.stdout) to an optional sink in a
    background thread, counting bytes, and calls action() once, as soon as
    at least n bytes have gone by.  The copy goes on after that until EOF,
    so the writer never blocks on a full pipe.

    count: bytes read so far; fired: threading.Event set after action ran;
    fired_at: the count when action ran (>= n: the writer may be a little
    ahead of the reader, so "after N bytes" means at or shortly after)."""

    def __init__(self, stream, n, action, sink=None, chunk=65536):
        self.stream = stream
        self.n = n
        self.action = action
        self.sink = sink
        self.chunk = chunk
        self.count = 0
        self.fired = threading.Event()
        self.fired_at = None
        self.error = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        fd = self.stream.fileno()
        try:
            while True:
                data = os.read(fd, self.chunk)
                if not data:
                    break
                self.count += len(data)
                if self.sink is not None:
                    self.sink.write(data)
                if not self.fired.is_set() and self.count >= self.n:
                    self.fired_at = self.count
                    try:
                        self.action()
                    finally:
                        self.fired.set()
        except Exception as e:       # reported through .error, not lost
            self.error = e
        finally:
            if self.sink is not None:
                with contextlib.suppress(Exception):
                    self.sink.flush()

    def wait_fired(self, timeout):
        """True when action ran within timeout seconds."""
        return self.fired.wait(timeout)

    def join(self, timeout):
        """Waits for EOF on the stream; True when the copy finished."""
        self._t.join(timeout)
        return not self._t.is_alive()


def kill9_after_bytes(proc, n, stream=None, sink=None):
    """SIGKILLs proc once n bytes of `stream` (default: proc.stdout, which
    must be a PIPE) have been read.  Returns the ByteWatch."""
    def kill():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    return ByteWatch(stream if stream is not None else proc.stdout, n, kill, sink=sink)


# ---- bounded waits ------------------------------------------------------------

def wait_file_size(path, n, timeout, procs=()):
    """Waits until file `path` holds at least n bytes.  Returns its size.
    Raises TimeoutError after timeout seconds, or RuntimeError as soon as
    one of procs has exited with a non-zero status (its output will not
    grow any more)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            size = 0
        if size >= n:
            return size
        for p in procs:
            if p.poll() not in (None, 0):
                raise RuntimeError("%s exited %d with %s at %d of %d bytes"
                                   % (p.args, p.returncode, path, size, n))
        if time.monotonic() > deadline:
            raise TimeoutError("%s has %d of %d bytes after %.0f s" % (path, size, n, timeout))
        time.sleep(0.02)


def wait_all(procs, timeout):
    """Waits for every process with one shared deadline; returns their exit
    codes.  On timeout kills the ones still running and raises
    TimeoutError naming them."""
    deadline = time.monotonic() + timeout
    late = []
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            late.append(p)
    if late:
        for p in late:
            p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
        raise TimeoutError("still running after %.0f s: %s"
                           % (timeout, ", ".join(str(p.args) for p in late)))
    return [p.returncode for p in procs]


def sha256_file(path):
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
