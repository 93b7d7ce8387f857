"""Black-box harness for the `sockit` binary.

The binary is $SOCKIT_BUILD/sockit; SOCKIT_BUILD defaults to the build/
directory of this work tree. Every test talks to the real binary over
loopback (127.0.0.1, 127.0.0.2, ::1) or Unix sockets in a private temporary
directory, with real peers (nc, socat, Python sockets) on the other side.

Rules the helpers enforce:
  * every wait is bounded (WAIT seconds, a few seconds; SOCKIT_TEST_WAIT
    overrides it for slow sanitizer builds);
  * synchronisation is by reading with a deadline (a process's stdout or
    stderr, a socket), never by sleeping;
  * every process and socket a test starts is torn down when it ends, and a
    sanitizer report in any sockit's stderr fails the test.
"""

import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Longest a test waits for something that should happen.
WAIT = float(os.environ.get("SOCKIT_TEST_WAIT", "5"))
# How long a test watches for something that must NOT happen.
QUIET = 0.5

SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer",
                   b"runtime error:", b"SUMMARY: UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------------------
# Output of a child process, collected by a reader thread.
# ---------------------------------------------------------------------------

class Stream:
    """Bytes arriving from a pipe. Tests read them with a deadline.

    `read_*` calls consume from a cursor; `wait_for` and `value` look at
    everything received so far without consuming.
    """

    def __init__(self, name):
        self.name = name
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._cond = threading.Condition()

    # -- reader thread side --
    def _feed(self, data):
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def _feed_eof(self):
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # -- test side --
    def _wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return pred()
                self._cond.wait(left)
            return True

    def value(self):
        with self._cond:
            return bytes(self._buf)

    def text(self):
        return self.value().decode("utf-8", "replace")

    @property
    def eof(self):
        with self._cond:
            return self._eof

    def read_exact(self, n, timeout=None):
        """The next n bytes; fails if they do not all arrive in time."""
        timeout = WAIT if timeout is None else timeout
        self._wait(lambda: len(self._buf) - self._pos >= n, timeout)
        with self._cond:
            got = bytes(self._buf[self._pos:self._pos + n])
            if len(got) < n:
                raise AssertionError(
                    f"{self.name}: wanted {n} bytes within {timeout}s, got "
                    f"{len(got)}: {got[:200]!r} (eof={self._eof})")
            self._pos += n
            return got

    def expect(self, data, timeout=None):
        """The next bytes must be exactly `data`."""
        got = self.read_exact(len(data), timeout)
        assert got == data, f"{self.name}: expected {data[:200]!r}, got {got[:200]!r}"

    def read_until(self, sep, timeout=None):
        timeout = WAIT if timeout is None else timeout
        self._wait(lambda: self._buf.find(sep, self._pos) >= 0, timeout)
        with self._cond:
            i = self._buf.find(sep, self._pos)
            if i < 0:
                raise AssertionError(
                    f"{self.name}: no {sep!r} within {timeout}s; have "
                    f"{bytes(self._buf[self._pos:])[:200]!r} (eof={self._eof})")
            got = bytes(self._buf[self._pos:i + len(sep)])
            self._pos = i + len(sep)
            return got

    def read_to_eof(self, timeout=None):
        """Everything up to end of stream (the child closed the pipe)."""
        timeout = WAIT if timeout is None else timeout
        self._wait(lambda: self._eof, timeout)
        with self._cond:
            if not self._eof:
                raise AssertionError(f"{self.name}: no EOF within {timeout}s; have "
                                     f"{bytes(self._buf[self._pos:])[:200]!r}")
            got = bytes(self._buf[self._pos:])
            self._pos = len(self._buf)
            return got

    def wait_contains(self, data, timeout):
        """True if `data` is (or within timeout comes to be) beyond the
        cursor; never fails."""
        return self._wait(lambda: self._buf.find(data, self._pos) >= 0, timeout)

    def pending(self):
        """What has arrived beyond the cursor, without waiting."""
        with self._cond:
            return bytes(self._buf[self._pos:])

    def expect_quiet(self, duration=QUIET):
        """Nothing new arrives for `duration` seconds."""
        with self._cond:
            start = len(self._buf)
        self._wait(lambda: len(self._buf) > start, duration)
        with self._cond:
            extra = bytes(self._buf[start:])
        assert not extra, f"{self.name}: unexpected data {extra[:200]!r}"

    def wait_for(self, pattern, timeout=None):
        """Waits until the whole stream so far matches regex `pattern`
        (bytes); returns the match."""
        timeout = WAIT if timeout is None else timeout
        rx = re.compile(pattern, re.M)
        box = []

        def found():
            m = rx.search(self._buf)
            if m:
                box[:] = [m]
            return bool(m)

        self._wait(found, timeout)
        if not box:
            raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s; have "
                                 f"{self.value()[-500:]!r}")
        return box[0]


def _pump(fd_file, stream):
    try:
        fd = fd_file.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            stream._feed(data)
    finally:
        stream._feed_eof()


class Proc:
    """A child process with stdout and stderr collected in the background."""

    def __init__(self, argv, name=None, stdin=subprocess.PIPE, env=None,
                 preexec_fn=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.p = subprocess.Popen(self.argv, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, bufsize=0,
                                  preexec_fn=preexec_fn, cwd=cwd)
        if self.p.stdin:
            os.set_blocking(self.p.stdin.fileno(), False)
        self.pid = self.p.pid
        self.out = Stream(f"{self.name} stdout")
        self.err = Stream(f"{self.name} stderr")
        self._threads = [
            threading.Thread(target=_pump, args=(self.p.stdout, self.out), daemon=True),
            threading.Thread(target=_pump, args=(self.p.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def __repr__(self):
        return f"<Proc {' '.join(self.argv)}>"

    # -- standard input --
    def write(self, data, timeout=None):
        """Writes all of data to the child's stdin, failing if the child
        does not take it within the timeout (it stopped reading)."""
        fd = self.p.stdin.fileno()
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        view = memoryview(data)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"{self!r} did not read its stdin: "
                                         f"{len(view)} of {len(data)} bytes left")
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    continue
                view = view[n:]

    def close_stdin(self):
        if self.p.stdin and not self.p.stdin.closed:
            try:
                self.p.stdin.close()
            except BrokenPipeError:
                pass

    # -- life --
    def alive(self):
        return self.p.poll() is None

    @property
    def returncode(self):
        return self.p.poll()

    def wait(self, timeout=None):
        """Exit status; fails the test if the process is still running."""
        timeout = WAIT if timeout is None else timeout
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self!r} still running after {timeout}s; stderr: {self.err.text()[-800:]!r}")
        for t in self._threads:
            t.join(WAIT)
        return rc

    def expect_exit(self, code, timeout=None):
        rc = self.wait(timeout)
        assert rc == code, (f"{self!r} exited {rc}, expected {code}; "
                            f"stderr: {self.err.text()[-800:]!r}")

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self):
        """Ends the process (SIGTERM, then SIGKILL) and closes its pipes."""
        self.close_stdin()
        if self.alive():
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(2)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(WAIT)
        for t in self._threads:
            t.join(WAIT)
        for f in (self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass

    # -- sockit specifics --
    def listening(self, timeout=None):
        """The endpoint from "sockit: listening on ENDPOINT" on stderr."""
        m = self.err.wait_for(rb"^sockit: listening on (\S+)$", timeout)
        return m.group(1).decode()

    def port(self, timeout=None):
        """The port of the "listening on" line of a tcp/udp listener."""
        ep = self.listening(timeout)
        m = re.search(r":(\d+)$", ep)
        assert m, f"no port in listening endpoint {ep!r}"
        return int(m.group(1))


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

HUB_PORTS_IN_EPHEMERAL_RANGE = (55000,)  # upper: the seed's port, inside 32768-60999
RESERVED_PORTS = "/proc/sys/net/ipv4/ip_local_reserved_ports"


@pytest.fixture(scope="session", autouse=True)
def hub_ports_not_ephemeral():
    """The tests open thousands of client connections; one that draws
    55000 as its ephemeral port and closes first leaves a TIME_WAIT there
    for 60 s, and a hub test after it would find its port taken. Where the
    suite may (root), it keeps the kernel from handing that port out while
    it runs, and afterwards takes back only what it added: a session that
    overlaps another (which added it first) adds and removes nothing. A
    session killed before its end leaves the port reserved, which only
    keeps the kernel from choosing it for outgoing connections."""
    def current():
        with open(RESERVED_PORTS) as f:
            return [p for p in f.read().strip().split(",") if p]

    def write(ports):
        with open(RESERVED_PORTS, "w") as f:
            f.write(",".join(ports) or "\n")

    try:
        added = [str(p) for p in HUB_PORTS_IN_EPHEMERAL_RANGE if str(p) not in current()]
        if added:
            write(current() + added)
    except OSError:
        added = []  # not allowed here: the hub tests skip when their port is taken
    try:
        yield
    finally:
        if added:
            try:
                write([p for p in current() if p not in added])
            except OSError:
                pass


@pytest.fixture(scope="session")
def sockit_bin():
    build = os.environ.get("SOCKIT_BUILD", os.path.join(REPO, "build"))
    path = os.path.join(build, "sockit")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"no sockit binary at {path}: build it first "
                    f"(make build) or set SOCKIT_BUILD to a build directory",
                    pytrace=False)
    return path


class Runner:
    """Starts processes for one test and tears them all down afterwards."""

    def __init__(self, sockit_bin):
        self.bin = sockit_bin
        self.procs = []
        self.socks = []

    def spawn(self, argv, **kw):
        p = Proc(argv, **kw)
        self.procs.append(p)
        return p

    def sockit(self, *args, **kw):
        kw.setdefault("name", "sockit " + (args[0] if args else ""))
        return self.spawn([self.bin, *args], **kw)

    def run(self, *args, input=b"", timeout=None):
        """Runs sockit to completion: (exit code, stdout, stderr)."""
        timeout = WAIT if timeout is None else timeout
        p = subprocess.run([self.bin, *args], input=input, capture_output=True,
                           timeout=timeout)
        self._check_sanitizer(p.stderr, args)
        return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")

    def track(self, sock):
        self.socks.append(sock)
        return sock

    @staticmethod
    def _check_sanitizer(err, what):
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report from {what}: {err[-3000:]!r}"

    def teardown(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        reports = []
        for p in self.procs:
            p.stop()
            err = p.err.value()
            print(f"--- {p!r} exit {p.p.returncode}\n{err[-2000:].decode('utf-8', 'replace')}")
            if p.argv[0] == self.bin and any(m in err for m in SANITIZER_MARKS):
                reports.append(f"{p!r}: {err[-3000:]!r}")
        assert not reports, "sanitizer reports:\n" + "\n".join(reports)


@pytest.fixture
def run(sockit_bin):
    r = Runner(sockit_bin)
    yield r
    r.teardown()


@pytest.fixture
def sockdir():
    """A short private directory for Unix socket files (sun_path is 107 bytes)."""
    d = tempfile.mkdtemp(prefix="skit-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def abstract_name():
    """Returns a factory of abstract socket names unique to this test run."""
    tag = f"sockit-test-{os.getpid()}-{secrets.token_hex(4)}"
    return lambda suffix="": f"{tag}-{suffix}" if suffix else tag


# ---------------------------------------------------------------------------
# Socket helpers (all with timeouts)
# ---------------------------------------------------------------------------

def tcp_connect(host, port, source=None, timeout=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(WAIT if timeout is None else timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def unix_connect(path, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(WAIT)
    s.connect(path)
    return s


def sun(name):
    """Python's spelling of a unix:@name endpoint's address."""
    return "\0" + name[1:] if name.startswith("@") else name


def recv_exact(s, n, timeout=None):
    s.settimeout(WAIT if timeout is None else timeout)
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = s.recv(n - len(buf))
        except socket.timeout:
            raise AssertionError(f"wanted {n} bytes, got {len(buf)}: {bytes(buf)[:200]!r} (timeout)")
        if not chunk:
            raise AssertionError(f"wanted {n} bytes, got {len(buf)}: {bytes(buf)[:200]!r} (EOF)")
        buf += chunk
    return bytes(buf)


def expect_recv(s, data, timeout=None):
    got = recv_exact(s, len(data), timeout)
    assert got == data, f"expected {data[:200]!r}, got {got[:200]!r}"


def recv_to_eof(s, timeout=None):
    """Everything until the peer's FIN; fails on timeout."""
    s.settimeout(WAIT if timeout is None else timeout)
    buf = bytearray()
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no EOF within timeout; got {bytes(buf)[:200]!r}")
        if not chunk:
            return bytes(buf)
        buf += chunk


def recv_msg(s, timeout=None, size=65536):
    """One datagram/packet (seqpacket, dgram)."""
    s.settimeout(WAIT if timeout is None else timeout)
    try:
        return s.recv(size)
    except socket.timeout:
        raise AssertionError("no datagram within timeout")


def recvfrom_msg(s, timeout=None, size=65536):
    s.settimeout(WAIT if timeout is None else timeout)
    try:
        return s.recvfrom(size)
    except socket.timeout:
        raise AssertionError("no datagram within timeout")


def expect_no_msg(s, duration=QUIET):
    s.settimeout(duration)
    try:
        data = s.recv(65536)
    except socket.timeout:
        return
    raise AssertionError(f"unexpected data {data[:200]!r}")


def expect_closed(s, timeout=None):
    """The peer closes the connection without sending a byte (EOF or reset)."""
    s.settimeout(WAIT if timeout is None else timeout)
    try:
        data = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return
    except socket.timeout:
        raise AssertionError("connection still open after timeout")
    assert data == b"", f"expected close without data, got {data[:200]!r}"


def closed_without_data_nowait(s):
    """For selectors: True if s is closed without data, False if it has data,
    None if nothing is readable yet."""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.setblocking(True)
    return data == b""


class Server:
    """A one-shot server in a thread: binds (port 0 / given path), then runs
    handler(conn_or_sock) for one accepted connection (stream) or on the
    bound socket itself (datagram). Errors in the handler fail the test at
    join()."""

    def __init__(self, family, kind, handler, addr=None):
        self.sock = socket.socket(family, kind)
        self.sock.settimeout(WAIT)
        if addr is None:
            addr = ("::1", 0) if family == socket.AF_INET6 else ("127.0.0.1", 0)
        self.sock.bind(addr)
        self.stream = kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET)
        if self.stream:
            self.sock.listen(16)
        self.addr = self.sock.getsockname()
        self.port = self.addr[1] if family != socket.AF_UNIX else None
        self.handler = handler
        self.error = None
        self.result = None
        self.peer = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            if self.stream:
                conn, self.peer = self.sock.accept()
                conn.settimeout(WAIT)
                with conn:
                    self.result = self.handler(conn)
            else:
                self.result = self.handler(self.sock)
        except BaseException as e:  # reported by join()
            self.error = e
        finally:
            self.sock.close()
            self.done.set()

    def join(self, timeout=None):
        self.thread.join(WAIT if timeout is None else timeout)
        assert not self.thread.is_alive(), "server thread did not finish"
        if self.error:
            raise self.error
        return self.result

    def close(self):
        self.sock.close()


def unix_listening(name, kind=socket.SOCK_STREAM, timeout=None):
    """Waits until a Unix socket `name` (a path or '@abstract') is bound (and,
    for stream and seqpacket sockets, listening), as /proc/net/unix shows. It is
    the readiness signal for a Unix listener that does not say it is ready."""
    want_type = {socket.SOCK_STREAM: 1, socket.SOCK_DGRAM: 2,
                 socket.SOCK_SEQPACKET: 5}[kind]
    deadline = time.monotonic() + (WAIT if timeout is None else timeout)
    while True:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) < 8 or parts[7] != name:
                    continue
                flags, typ = int(parts[3], 16), int(parts[4], 16)
                if typ == want_type and (kind == socket.SOCK_DGRAM or flags & 0x10000):
                    return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listening on unix socket {name!r}")
        time.sleep(0.01)


def free_port_holder(family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket bound to a free loopback port and not listening: connecting to
    the port is refused while the holder keeps anyone else from taking it."""
    s = socket.socket(family, kind)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    return s


def signal_taken(pid, sig):
    """True once process pid catches, blocks or ignores signal sig (so the
    signal no longer kills it outright), as /proc/PID/status shows."""
    bit = 1 << (int(sig) - 1)
    mask = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigCgt:", "SigBlk:", "SigIgn:")):
                mask |= int(line.split()[1], 16)
    return bool(mask & bit)


def wait_signal_taken(pid, sig, timeout=None):
    poll_until(lambda: signal_taken(pid, sig), timeout, what=f"pid {pid} to handle signal {sig}")


def children_of(pid):
    """Pids whose parent is pid."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                kids.append(int(d))
    return kids


def poll_until(pred, timeout=None, what="condition"):
    """Bounded wait for a condition no event reports (a file appearing)."""
    deadline = time.monotonic() + (WAIT if timeout is None else timeout)
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def converse(a, b, msg_a, msg_b):
    """a's stdin reaches b's stdout, then b's stdin reaches a's stdout."""
    a.write(msg_a)
    b.out.expect(msg_a)
    b.write(msg_b)
    a.out.expect(msg_b)

