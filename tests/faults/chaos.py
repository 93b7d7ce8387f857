"""Starting and stopping tests/faults/chaos_proxy from Python.

    from faults.chaos import ChaosProxy, proxy_binary

    with ChaosProxy(proxy_binary(build), "10.9.0.2:9000", host=net.a,
                    up_delay=10, up_split=1500, down_split=16, seed=1) as px:
        connect to 127.0.0.1:px.port (inside net.a's namespace)
    px.log   # the proxy's stderr: seed, stalls, cuts, per-connection byte counts

Keyword options map to the proxy's flags: up_delay=10 is --up-delay 10,
down_cut="fin" is --down-cut fin, once=True is --once.  "up" is client to
target, "down" is target to client.  See chaos_proxy.c for their meaning.
"""

import os
import selectors
import subprocess
import tempfile
import time
import weakref

from . import cleanup

__all__ = ["ChaosProxy", "proxy_binary"]


_running = weakref.WeakSet()


def _stop_all():
    for px in list(_running):
        px.stop()


cleanup.register(_stop_all)


def proxy_binary(build_dir):
    """Path of the chaos_proxy the CMake build makes under build_dir."""
    return os.path.join(build_dir, "tests", "faults", "chaos_proxy")


class ChaosProxy:
    """Runs chaos_proxy relaying to target ("host:port"), in host's network
    namespace when host (a netns.Host) is given, else in this one.  The
    proxy listens on 127.0.0.1 there; .port is its port once started."""

    def __init__(self, binary, target, host=None, listen="127.0.0.1:0",
                 start_timeout=5.0, **opts):
        self.binary = binary
        self.target = target
        self.host = host
        self.listen = listen
        self.start_timeout = start_timeout
        self.opts = opts
        self.proc = None
        self.port = None
        self._log = None

    def argv(self):
        argv = [self.binary, "--target", self.target, "--listen", self.listen]
        for k, v in sorted(self.opts.items()):
            flag = "--" + k.replace("_", "-")
            if v is True:
                argv.append(flag)
            elif v is not None and v is not False:
                argv += [flag, str(v)]
        return argv

    def start(self):
        """Starts the proxy and reads its port (bounded by start_timeout).
        Raises RuntimeError when it exits or stays silent."""
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError("chaos_proxy not built: %s" % self.binary)
        self._log = tempfile.TemporaryFile()
        kw = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        if self.host is not None:
            self.proc = self.host.popen(self.argv(), **kw)
        else:
            self.proc = subprocess.Popen(self.argv(), **kw)
        _running.add(self)
        line = b""
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise RuntimeError("chaos_proxy printed no port in %.0f s: %s"
                                       % (self.start_timeout, self.log))
                data = os.read(self.proc.stdout.fileno(), 64)
                if not data:
                    self.stop()
                    raise RuntimeError("chaos_proxy exited: %s" % self.log)
                line += data
        self.port = int(line)
        return self

    def stop(self, timeout=5.0):
        """Terminates the proxy (SIGTERM, then SIGKILL) and waits, bounded."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)

    def wait(self, timeout):
        """Waits for a --once proxy to finish; returns its exit code."""
        return self.proc.wait(timeout=timeout)

    @property
    def log(self):
        """Everything the proxy wrote to stderr so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        return False
