#!/usr/bin/env python3
"""bench/run.py - the benchmark driver behind `make bench`.

    /usr/bin/python3 bench/run.py --build build [--quick] [--workload NAME]...

Runs each workload against sockit and against its peers (socat, ncat,
netcat-openbsd, iperf3, our own references) in one run, alternating: a
warm-up round that is thrown away, then at least three rounds (five for
the cheap workloads and in a quick run) in each of which every program
runs once (forward order in odd rounds, backward in even ones, so slow
drift of the machine hits everyone alike). It writes
bench/results.md: one table per workload with each program's median and
min-max, the ratio sockit/program per round and the median of those
ratios, plus the machine and the date. Ratios are the figures to quote;
absolute numbers on a shared machine are noise.

Nothing here measures with the sockit binary's own help: the load comes
from bench/loadgen (C, epoll), which checks every byte it gets back. A
program that fails, hangs or returns wrong bytes gets its row marked
failed with the reason; no number is ever made up for it, and the rest of
the run goes on.

Adding a workload: write a function `run(ctx, side) -> Result` (or reuse
one of the runners below) and append a Workload with its Sides to
WORKLOADS. See docs/benchmarks.md.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "bench")
MIB = 1 << 20


class BenchError(Exception):
    """One run of one program failed; the message says why, in one line."""


# ---------------------------------------------------------------------------
# Settings of one driver invocation
# ---------------------------------------------------------------------------

@dataclass
class Ctx:
    """What every runner needs: where the programs are and how big to go."""
    build: str
    quick: bool
    rounds: Optional[int]  # --rounds for every workload; None: rounds_for() decides
    bulk_bytes: int       # bytes per bulk run
    run_timeout: float    # hard limit for one run of one program
    echo_seconds: float   # how long one echo measurement runs
    tmp: str              # private scratch directory
    data_file: str = ""   # bulk input for senders under test (made lazily)

    @property
    def sockit(self):
        return os.path.join(self.build, "sockit")

    @property
    def loadgen(self):
        return os.path.join(self.build, "bench", "loadgen")

    @property
    def echo_ceiling(self):
        return os.path.join(self.build, "bench", "echo_ceiling")


@dataclass
class Result:
    """One successful run: the figure (higher is better) and side figures."""
    value: float
    extra: Dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Child processes: every wait bounded, every child reaped
# ---------------------------------------------------------------------------

class Child:
    """A program under test or a load generator, in its own process group.

    stderr goes to a file (read for "listening on ... port" lines and error
    messages); stdout is a pipe only when asked for. stop() ends the whole
    group: SIGTERM, then SIGKILL after a grace period.
    """

    def __init__(self, ctx, argv, name, stdin=None, stdout=None):
        self.name = name
        self.argv = argv
        self.ctx_timeout = ctx.run_timeout
        self.err_path = os.path.join(ctx.tmp, f"{name}.{time.monotonic_ns()}.err")
        self._err = open(self.err_path, "wb")
        self._out = bytearray()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=self._err, start_new_session=True)
        except OSError as e:
            self._err.close()
            raise BenchError(f"cannot start {argv[0]}: {e.strerror}")
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.exit_ns = None
        self.rusage = None  # its CPU use (os.wait4), once wait() has reaped it

    def stderr_text(self):
        """Everything the child wrote to stderr so far."""
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def last_error_line(self):
        """The child's last non-empty stderr line, for a failure message."""
        lines = [l for l in self.stderr_text().splitlines() if l.strip()]
        return lines[-1].strip() if lines else ""

    def running(self):
        return self.proc.poll() is None and self.exit_ns is None

    def wait(self, deadline):
        """Waits for the child to exit, at most until deadline (monotonic
        seconds). Returns its exit code; self.exit_ns is when it exited, to
        the microsecond (pidfd readiness, no polling loop)."""
        if self.exit_ns is None:
            wait_any([self], deadline)
        if self.exit_ns is None:
            raise BenchError(f"{self.name} did not finish within the run's time limit "
                             f"({self.ctx_timeout:g} s)")
        if self.proc.returncode is None:  # reaped here, for its rusage (and its children's)
            _, status, self.rusage = os.wait4(self.proc.pid, 0)
            self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode

    def read_line(self, deadline):
        """The next line of the child's stdout pipe, waiting until deadline."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"{self.name} printed no line in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BenchError(f"{self.name} exited early: {self.last_error_line()}")
            self._out += chunk
        line, _, rest = bytes(self._out).partition(b"\n")
        self._out = bytearray(rest)
        return line.decode("utf-8", "replace")

    def read_rest(self, deadline):
        """All remaining stdout up to EOF, waiting until deadline."""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError(f"{self.name} did not finish in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._out += chunk
        text = self._out.decode("utf-8", "replace")
        self._out = bytearray()
        return text

    def stop(self):
        """Ends the child's process group if it still runs; always reaps."""
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                if select.select([self.pidfd], [], [], grace)[0]:
                    break
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdout, self._err):
            if f:
                f.close()
        os.close(self.pidfd)
        self.pidfd = -1


def wait_any(children, deadline):
    """Waits until one of children that still runs exits, or deadline.
    Sets exit_ns on every child found exited, the moment it is seen."""
    running = [c for c in children if c.exit_ns is None]
    left = deadline - time.monotonic()
    if not running or left <= 0:
        return
    ready = select.select([c.pidfd for c in running], [], [], left)[0]
    now = time.monotonic_ns()
    for c in running:
        if c.pidfd in ready:
            c.exit_ns = now


def wait_watching(target, helper, deadline):
    """Waits for target to exit, but fails at once if helper (a load
    generator on the other end) exits with an error first: a run whose
    load has failed must not sit out the whole time limit."""
    while target.exit_ns is None and time.monotonic() < deadline:
        wait_any([target, helper], deadline)
        if helper.exit_ns is not None and target.exit_ns is None:
            if helper.proc.wait() != 0:
                if helper.proc.stdout:
                    finish_loadgen(helper, deadline)  # raises with its error
                raise BenchError(f"{helper.name} exited {helper.proc.returncode}: "
                                 f"{helper.last_error_line()}")
            helper = target  # it is done; only the target is left to wait for
    return target.wait(deadline)


class Children:
    """The children of one run; stops all of them however the run ends."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.list: List[Child] = []

    def start(self, argv, name, **kw):
        c = Child(self.ctx, argv, name, **kw)
        self.list.append(c)
        return c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for c in reversed(self.list):
            if c.pidfd >= 0:
                c.stop()
        return False


def lg_timeout(ctx):
    """The --timeout for a load generator: a little inside the run's limit,
    so the generator's own account of what hung arrives before the
    driver gives up on it."""
    return f"{max(ctx.run_timeout - 2, 1):g}"


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on now, for programs that
    cannot listen on port 0 and say which port they got."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port):
    """True when some socket listens on TCP port (any address), from
    /proc/net/tcp{,6}: no connection is made, so a one-shot listener is
    not used up by the check."""
    want = f":{port:04X} "
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want.strip()) and fields[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def wait_listening(child, port, deadline):
    """Waits until port is listening; fails early if child exits first."""
    while not is_listening(port):
        if not child.running():
            raise BenchError(f"{child.name} exited before listening: {child.last_error_line()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} not listening on port {port} in time")
        time.sleep(0.005)


def wait_port_announced(child, pattern, path, deadline):
    """Returns the port a child announces in the file its stderr or stdout
    goes to (regex group 1)."""
    rx = re.compile(pattern, re.M)
    while True:
        with open(path, "rb") as f:
            m = rx.search(f.read().decode("utf-8", "replace"))
        if m:
            return int(m.group(1))
        if not child.running():
            raise BenchError(f"{child.name} exited before listening: {child.last_error_line()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} announced no port in time")
        time.sleep(0.005)


def parse_json_line(child, text):
    """The last line of a load generator's stdout, as a dict."""
    lines = [l for l in text.splitlines() if l.startswith("{")]
    if not lines:
        raise BenchError(f"{child.name} printed no result: {child.last_error_line()}")
    return json.loads(lines[-1])


def finish_loadgen(child, deadline):
    """Waits for a load generator and returns its JSON result; a run with
    errors fails with the generator's first error."""
    text = child.read_rest(deadline)
    rc = child.wait(deadline)
    res = parse_json_line(child, text)
    if res.get("errors", 0) or rc != 0:
        raise BenchError(f"{child.name}: {res.get('error') or f'exit {rc}'}")
    return res


# ---------------------------------------------------------------------------
# Sides and workloads
# ---------------------------------------------------------------------------

@dataclass
class Side:
    """One program in a workload. `cmd` is its command line (a template:
    {sockit}, {port}, {build}, {echo_ceiling}, {bench} are filled in; the
    report shows it with PORT for the port); `port` says how its port is
    found: a regex over its stderr (or stdout, port_in="stdout") when it
    listens on port 0 itself and says where, or None when the driver picks
    a free port and waits for it to listen."""
    name: str
    cmd: str
    port: Optional[str] = None
    port_in: str = "stderr"   # where `port` is looked for: "stderr" or "stdout"
    reference: bool = False   # a ceiling, not a competitor
    under_test: bool = False  # the sockit side
    runner: Optional[Callable] = None  # overrides the workload's runner
    quick: bool = True        # also run in --quick (a short smoke run)

    def argv(self, ctx, port=0, target=""):
        cert, key = tls_pair(ctx) if "{cert}" in self.cmd else ("", "")
        text = self.cmd.format(sockit=ctx.sockit, port=port, build=ctx.build,
                               echo_ceiling=ctx.echo_ceiling, bench=HERE, target=target,
                               cert=cert, key=key)
        return shlex.split(text)


@dataclass
class Workload:
    name: str
    title: str          # one line for the table heading
    unit: str           # of Result.value; higher is better
    runner: Callable    # runner(ctx, side) -> Result
    sides: List[Side]
    pending: bool = False  # sockit does not serve this yet: run only on request
    notes: str = ""
    quick: bool = True     # also run in --quick
    rounds: int = 5        # counted rounds in a full run; 3 for the costly ones


def start_server(ctx, kids, side, deadline, **kw):
    """Starts a listening side and returns (child, port)."""
    if side.port:
        path = None
        if side.port_in == "stdout":
            path = os.path.join(ctx.tmp, f"{side.name}.{time.monotonic_ns()}.out")
            with open(path, "wb") as out:
                child = kids.start(side.argv(ctx, 0), side.name, stdout=out, **kw)
        else:
            child = kids.start(side.argv(ctx, 0), side.name, **kw)
        return child, wait_port_announced(child, side.port, path or child.err_path, deadline)
    port = free_port()
    child = kids.start(side.argv(ctx, port), side.name, **kw)
    wait_listening(child, port, deadline)
    return child, port


def check_exit(child, deadline, what="server"):
    """Waits for child and fails the run unless it exited 0."""
    rc = child.wait(deadline)
    if rc != 0:
        raise BenchError(f"{what} {child.name} exited {rc}: {child.last_error_line()}")


def run_bulk_listen(ctx, side):
    """The side listens and receives ctx.bulk_bytes from one loadgen client,
    writing them to /dev/null; MiB/s from the client's connect to the
    receiver's exit (it exits once it has read everything and EOF). The
    client checks it sent every byte and got nothing but EOF back."""
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        server, port = start_server(ctx, kids, side, deadline)
        client = kids.start([ctx.loadgen, "bulk-send", "--connect", f"127.0.0.1:{port}",
                             "--bytes", str(ctx.bulk_bytes), "--timeout", lg_timeout(ctx)],
                            "loadgen", stdout=subprocess.PIPE)
        rc = wait_watching(server, client, deadline)
        if rc != 0:
            raise BenchError(f"receiver {server.name} exited {rc}: {server.last_error_line()}")
        res = finish_loadgen(client, deadline)
        if res["bytes"] != ctx.bulk_bytes:
            raise BenchError(f"sent {res['bytes']} of {ctx.bulk_bytes} bytes")
        ns = server.exit_ns - res["connected_ns"]
        return Result(ctx.bulk_bytes / MIB / (ns / 1e9))


KEEPOPEN_CLIENTS = 4


def run_bulk_keepopen(ctx, side):
    """The side keeps listening and serves KEEPOPEN_CLIENTS loadgen clients
    sending at once, ctx.bulk_bytes in all; its stdout goes through a pipe
    to `loadgen bulk-sink`, which counts the bytes (their order across
    clients is the server's business, so the pattern is not checked).
    MiB/s from the clients' connect to the arrival of the last byte."""
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        sink = kids.start([ctx.loadgen, "bulk-sink", "--bytes", str(ctx.bulk_bytes),
                           "--no-verify", "--drain", "0.2", "--timeout", lg_timeout(ctx)],
                          "bulk-sink", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        server, port = start_server(ctx, kids, side, deadline, stdout=sink.proc.stdin)
        sink.proc.stdin.close()  # the server holds the pipe's write end now
        client = kids.start([ctx.loadgen, "bulk-send", "--connect", f"127.0.0.1:{port}",
                             "--conns", str(KEEPOPEN_CLIENTS), "--bytes", str(ctx.bulk_bytes),
                             "--timeout", lg_timeout(ctx)],
                            "loadgen", stdout=subprocess.PIPE)
        sent = finish_loadgen(client, deadline)
        if sent["bytes"] != ctx.bulk_bytes:
            raise BenchError(f"sent {sent['bytes']} of {ctx.bulk_bytes} bytes")
        got = finish_loadgen(sink, deadline)
        if not server.running():
            raise BenchError(f"keep-open server exited: {server.last_error_line()}")
        ns = got["reached_ns"] - sent["connected_ns"]
        return Result(ctx.bulk_bytes / MIB / (ns / 1e9))


def ensure_data_file(ctx):
    """Makes (once) the bulk input file senders under test read: the
    loadgen pattern, so the receiving loadgen can verify every byte."""
    if not ctx.data_file:
        path = os.path.join(ctx.tmp, "bulk.dat")
        out = subprocess.run([ctx.loadgen, "genfile", "--bytes", str(ctx.bulk_bytes),
                              "--out", path], capture_output=True, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"genfile failed: {out.stderr.decode(errors='replace').strip()}")
        ctx.data_file = path
    return ctx.data_file


def run_bulk_connect(ctx, side):
    """The side connects to a `loadgen bulk-recv` and sends it the bulk file
    from its stdin; the receiver verifies every byte and the count. MiB/s
    from accept to EOF, as the receiver saw it."""
    data = ensure_data_file(ctx)
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        recv = kids.start([ctx.loadgen, "bulk-recv", "--listen", "127.0.0.1:0",
                           "--bytes", str(ctx.bulk_bytes), "--timeout", lg_timeout(ctx)],
                          "loadgen", stdout=subprocess.PIPE)
        port = int(recv.read_line(deadline))
        with open(data, "rb") as stdin:
            sender = kids.start(side.argv(ctx, port), side.name, stdin=stdin)
        wait_watching(recv, sender, deadline)
        res = finish_loadgen(recv, deadline)
        check_exit(sender, deadline, "sender")
        return Result(res["mib_per_sec"])


def run_iperf3(ctx, side):
    """Reference: iperf3 moving ctx.bulk_bytes over loopback, by its own
    account (receiver side). side.cmd is only shown in the table."""
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        port = free_port()
        server = kids.start(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)], "iperf3-s")
        wait_listening(server, port, deadline)
        client = kids.start(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n",
                             str(ctx.bulk_bytes), "-J"], "iperf3", stdout=subprocess.PIPE)
        text = client.read_rest(deadline)
        if client.wait(deadline) != 0:
            raise BenchError(f"iperf3 failed: {text.strip()[-200:]}")
        end = json.loads(text)["end"]
        if end["sum_sent"]["bytes"] < ctx.bulk_bytes:
            raise BenchError(f"iperf3 sent {end['sum_sent']['bytes']} of {ctx.bulk_bytes} bytes")
        # iperf3's receiver-side rate (its own accounting; it stops counting
        # when the sender is done, so its byte count may fall a little short).
        return Result(end["sum_received"]["bits_per_second"] / 8 / MIB)


def run_echo(mode, conns, size):
    """Returns a runner: the side is an echo server; `loadgen MODE` runs
    against it for ctx.echo_seconds and must see every byte come back.
    The figure is round trips (or connections) per second; p50/p99 go in
    the side figures."""
    def runner(ctx, side):
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            server, port = start_server(ctx, kids, side, deadline)
            client = kids.start([ctx.loadgen, mode, "--connect", f"127.0.0.1:{port}",
                                 "--conns", str(conns), "--size", str(size),
                                 "--duration", str(ctx.echo_seconds),
                                 "--timeout", lg_timeout(ctx)],
                                "loadgen", stdout=subprocess.PIPE)
            res = finish_loadgen(client, deadline)
            if not server.running():
                raise BenchError(f"server exited: {server.last_error_line()}")
            key = "round_trips_per_sec" if mode == "pingpong" else "connections_per_sec"
            return Result(res[key], {"p50 µs": res["p50_us"], "p99 µs": res["p99_us"]})
    return runner


# ---- relays: the same load direct and through each relay -----------------------

DIRECT = "direct"  # a relay side's cmd for "no relay at all" (the reference)


def start_relay(ctx, kids, side, target, direct_port, deadline):
    """Puts side (a relay) in front of target and returns the TCP port the
    load should use: a fresh one for a relay, direct_port for DIRECT."""
    if side.cmd == DIRECT:
        return direct_port
    port = free_port()
    child = kids.start(side.argv(ctx, port, target), side.name)
    wait_listening(child, port, deadline)
    return port


REDIS_REQUESTS = {True: 3000, False: 30000}  # per redis-benchmark test, quick or full


def children_cpu():
    """CPU seconds (user + system) of every child reaped so far, and of
    their reaped children (socat's forks): taken before and after a run,
    the difference is what the whole run cost the machine."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_relay_iperf3(ctx, side):
    """iperf3 moving ctx.bulk_bytes through the relay (or direct), by
    iperf3's own receiver-side account, in MiB/s."""
    deadline = time.monotonic() + ctx.run_timeout
    cpu0 = children_cpu()
    with Children(ctx) as kids:
        tport = free_port()
        server = kids.start(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(tport)], "iperf3-s")
        wait_listening(server, tport, deadline)
        port = start_relay(ctx, kids, side, str(tport), tport, deadline)
        client = kids.start(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-n",
                             str(ctx.bulk_bytes), "-J"], "iperf3", stdout=subprocess.PIPE)
        text = client.read_rest(deadline)
        if client.wait(deadline) != 0:
            raise BenchError(f"iperf3 failed: {text.strip()[-200:]}")
        end = json.loads(text)["end"]
        if end["sum_sent"]["bytes"] < ctx.bulk_bytes:
            raise BenchError(f"iperf3 sent {end['sum_sent']['bytes']} of {ctx.bulk_bytes} bytes")
    gib = end["sum_received"]["bytes"] / (1024 * MIB)
    return Result(end["sum_received"]["bits_per_second"] / 8 / MIB,
                  {"CPU s/GiB": (children_cpu() - cpu0) / gib})


def run_relay_redis(ctx, side):
    """redis-benchmark (PING, SET, GET; 50 clients) against a redis that
    listens on a unix socket (relays) and on TCP (direct). The figure is
    the mean of the tests' requests per second; each test's rate is kept,
    and so is the CPU time all the processes took per request."""
    deadline = time.monotonic() + ctx.run_timeout
    cpu0 = children_cpu()
    with Children(ctx) as kids:
        sock = os.path.join(ctx.tmp, f"redis.{time.monotonic_ns()}.sock")
        tport = free_port()
        redis = kids.start(["redis-server", "--port", str(tport), "--bind", "127.0.0.1",
                            "--unixsocket", sock, "--save", "", "--appendonly", "no"], "redis")
        wait_listening(redis, tport, deadline)
        port = start_relay(ctx, kids, side, sock, tport, deadline)
        n = REDIS_REQUESTS[ctx.quick]
        bench = kids.start(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50",
                            "-n", str(n), "-t", "ping,set,get", "--csv"], "redis-benchmark",
                           stdout=subprocess.PIPE)
        text = bench.read_rest(deadline)
        if bench.wait(deadline) != 0:
            raise BenchError(f"redis-benchmark failed: {bench.last_error_line()}")
        rates = {}
        for line in text.splitlines():
            cells = [c.strip('"') for c in line.split(",")]
            if len(cells) > 1 and cells[0] in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
                rates[cells[0]] = float(cells[1])
        if len(rates) != 4:
            raise BenchError(f"redis-benchmark printed {sorted(rates)}, not PING/SET/GET")
    return Result(statistics.mean(rates.values()),
                  {"SET /s": rates["SET"], "GET /s": rates["GET"],
                   "CPU µs/request": (children_cpu() - cpu0) / (4 * n) * 1e6})


def run_relay_echo(conns, size):
    """Returns a runner: echo ping-pong through the relay (or direct) to
    echo_ceiling; p50/p99 latency show what a hop adds."""
    def runner(ctx, side):
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            tport = free_port()
            echo = kids.start([ctx.echo_ceiling, "--listen", f"127.0.0.1:{tport}"], "echo_ceiling")
            wait_listening(echo, tport, deadline)
            port = start_relay(ctx, kids, side, str(tport), tport, deadline)
            client = kids.start([ctx.loadgen, "pingpong", "--connect", f"127.0.0.1:{port}",
                                 "--conns", str(conns), "--size", str(size),
                                 "--duration", str(ctx.echo_seconds),
                                 "--timeout", lg_timeout(ctx)],
                                "loadgen", stdout=subprocess.PIPE)
            res = finish_loadgen(client, deadline)
            return Result(res["round_trips_per_sec"],
                          {"p50 µs": res["p50_us"], "p99 µs": res["p99_us"]})
    return runner


# ---- TLS -------------------------------------------------------------------------

_TLS_PAIRS = {}


def tls_pair(ctx):
    """A self-signed ECDSA certificate and key for 127.0.0.1, made once per
    run in ctx.tmp with the openssl CLI."""
    if ctx.tmp not in _TLS_PAIRS:
        cert, key = os.path.join(ctx.tmp, "bench-cert.pem"), os.path.join(ctx.tmp, "bench-key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "2", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            raise BenchError(f"openssl req failed: {r.stderr.decode(errors='replace')[-200:]}")
        _TLS_PAIRS[ctx.tmp] = (cert, key)
    return _TLS_PAIRS[ctx.tmp]


def run_tls_relay(ctx, side):
    """`sockit connect --insecure tls://` sends the bulk file through a relay
    that terminates TLS (the side) to `loadgen bulk-recv`, which checks every
    byte; MiB/s from accept to EOF. The same client for every side, so the
    ratio is the relays'."""
    deadline = time.monotonic() + ctx.run_timeout
    data = ensure_data_file(ctx)
    with Children(ctx) as kids:
        recv = kids.start([ctx.loadgen, "bulk-recv", "--listen", "127.0.0.1:0",
                           "--bytes", str(ctx.bulk_bytes), "--timeout", lg_timeout(ctx)],
                          "bulk-recv", stdout=subprocess.PIPE)
        rport = int(recv.read_line(deadline).split()[-1])
        port = free_port()
        relay = kids.start(side.argv(ctx, port, str(rport)), side.name)
        wait_listening(relay, port, deadline)
        with open(data, "rb") as f:
            client = kids.start([ctx.sockit, "connect", "--insecure",
                                 f"tls://127.0.0.1:{port}"], "sockit connect", stdin=f)
        res = finish_loadgen(recv, deadline)
        if client.wait(deadline) != 0:
            raise BenchError(f"client failed: {client.last_error_line()}")
        return Result(res["mib_per_sec"])


def run_tls_handshakes(ctx, side):
    """`openssl s_time -new`: full TLS handshakes (connect, handshake, close)
    for ctx.echo_seconds against the side; connections per second of wall
    time."""
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        port = free_port()
        server = kids.start(side.argv(ctx, port), side.name)
        wait_listening(server, port, deadline)
        secs = max(1, int(round(ctx.echo_seconds * 2)))
        start = time.monotonic()
        st = kids.start(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                         "-time", str(secs)], "s_time", stdout=subprocess.PIPE)
        text = st.read_rest(deadline)
        elapsed = time.monotonic() - start
        if st.wait(deadline) != 0:
            raise BenchError(f"s_time failed: {st.last_error_line() or text[-200:]}")
        m = re.search(r"(\d+) connections in [\d.]+s", text)
        if not m or int(m.group(1)) == 0:
            raise BenchError(f"s_time made no connection: {text.strip()[-200:]}")
        return Result(int(m.group(1)) / elapsed)


TLS_CERT_OPTS = "--cert {cert} --key {key}"

RELAY_TCP_SIDES = [
    Side("sockit relay", "{sockit} relay -q tcp://127.0.0.1:{port} tcp://127.0.0.1:{target}",
         under_test=True),
    Side("direct (no relay)", DIRECT, reference=True),
    Side("socat", "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:{target}"),
]

IPERF3 = Side("iperf3", "iperf3 -s -1 / iperf3 -c 127.0.0.1 -n BYTES", reference=True,
              runner=run_iperf3)

SOCKIT_PORT = r"listening on tcp://127\.0\.0\.1:(\d+)"

ECHO_SIDES = [
    Side("sockit", "{sockit} serve echo tcp://127.0.0.1:0",
         port=r"^echo\s+tcp://127\.0\.0\.1:(\d+)", port_in="stdout", under_test=True),
    Side("sockit --workers 2", "{sockit} serve --workers 2 echo tcp://127.0.0.1:0",
         port=r"^echo\s+tcp://127\.0\.0\.1:(\d+)", port_in="stdout", quick=False),
    Side("echo_ceiling (C, epoll)", "{echo_ceiling} --listen 127.0.0.1:{port}",
         reference=True),
    Side("python ThreadingTCPServer", "/usr/bin/python3 {bench}/seed_threading_server.py {port}",
         quick=False),
    Side("socat (fork)", "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024 EXEC:cat"),
    Side("ncat -k (exec cat)", "ncat -l -k --max-conns 2000 127.0.0.1 {port} --exec /bin/cat",
         quick=False),
]

WORKLOADS = [
    Workload(
        "bulk-listen", "receive bulk data from one client to /dev/null", "MiB/s", run_bulk_listen,
        [Side("sockit", "{sockit} listen tcp://127.0.0.1:0", port=SOCKIT_PORT, under_test=True),
         Side("nc (OpenBSD)", "nc -l 127.0.0.1 {port}"),
         Side("ncat", "ncat --recv-only -l 127.0.0.1 {port}"),
         Side("socat", "socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr STDOUT"),
         IPERF3],
        notes="Client: `loadgen bulk-send`. Time: client connected to receiver exited "
              "(it exits after reading EOF)."),
    Workload(
        "bulk-keepopen", f"keep-open listener, {KEEPOPEN_CLIENTS} clients sending at once, "
        "stdout through a pipe", "MiB/s", run_bulk_keepopen,
        [Side("sockit", "{sockit} listen --keep-open tcp://127.0.0.1:0", port=SOCKIT_PORT,
              under_test=True),
         Side("nc -k (OpenBSD)", "nc -l -k 127.0.0.1 {port}", quick=False),
         Side("ncat -k", "ncat --recv-only -l -k 127.0.0.1 {port}"),
         Side("socat (fork)", "socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork STDOUT")],
        rounds=3,
        notes="Clients: `loadgen bulk-send --conns 4`; stdout counted by `loadgen bulk-sink`. "
              "nc -k serves one client at a time (the others wait in the backlog, a second "
              "per retry), so a quick run leaves it out."),
    Workload(
        "bulk-connect", "send a file from stdin to a verifying receiver", "MiB/s", run_bulk_connect,
        [Side("sockit", "{sockit} connect tcp://127.0.0.1:{port}", under_test=True),
         Side("nc -N (OpenBSD)", "nc -N 127.0.0.1 {port}"),
         Side("ncat", "ncat --send-only 127.0.0.1 {port}"),
         Side("socat", "socat -u STDIN TCP:127.0.0.1:{port}"),
         IPERF3],
        notes="Receiver: `loadgen bulk-recv`, which checks every byte against the pattern. "
              "Time: accept to EOF."),
    Workload(
        "echo-pingpong-1", "echo, 1 connection, 64-byte messages, one in flight",
        "round trips/s", run_echo("pingpong", 1, 64), ECHO_SIDES, quick=False, rounds=3,
        notes="Latency-bound: one round trip at a time."),
    Workload(
        "echo-pingpong-50", "echo, 50 connections, 64-byte messages, one in flight each",
        "round trips/s", run_echo("pingpong", 50, 64), ECHO_SIDES, rounds=3,
        notes="The seeds' servers' target: at least 2x socat, 0.9x the ceiling; above the "
              "ceiling with --workers 2."),
    Workload(
        "echo-pingpong-1000", "echo, 1000 connections, 64-byte messages, one in flight each",
        "round trips/s", run_echo("pingpong", 1000, 64), ECHO_SIDES, quick=False, rounds=3,
        notes="socat forks 1000 processes and ncat runs 1000 `cat`s (and is bound by select())."),
    Workload(
        "echo-connrate", "echo, connect + one 32-byte exchange + close, 8 in flight",
        "connections/s", run_echo("connrate", 8, 32), ECHO_SIDES, rounds=3,
        notes="Target: at least 10x socat's fork per connection."),
    Workload(
        "relay-iperf3", "iperf3 through a TCP relay vs direct", "MiB/s", run_relay_iperf3,
        RELAY_TCP_SIDES + [
            Side("socat -b 262144", "socat -b 262144 TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,"
                 "fork TCP:127.0.0.1:{target}")],
        rounds=3,
        notes="Targets: sockit relay at least 0.85x direct and 1.5x socat. On 2 cores the "
              "relay is a third busy process next to iperf3's client and server. CPU s/GiB: "
              "user + system time of every process of the run per GiB received; 2 cores "
              "give at most 2 CPU-s per second, so it bounds what any run can reach."),
    Workload(
        "relay-redis", "redis-benchmark (PING, SET, GET; 50 clients) to a unix-socket redis",
        "requests/s", run_relay_redis,
        [Side("sockit relay", "{sockit} relay -q tcp://127.0.0.1:{port} unix:{target}",
              under_test=True),
         Side("direct (redis on TCP)", DIRECT, reference=True),
         Side("socat", "socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=1024 "
              "UNIX-CONNECT:{target}")],
        quick=False, rounds=3,
        notes="Figure: mean of the four tests' requests/s. Targets: at least 2x socat, 0.8x direct. "
              "CPU µs/request: user + system time of every process of the run (redis, "
              "redis-benchmark, the relay and its forks) per request. socat gets backlog=1024: "
              "with its default of 5, SYNs of the 50 clients are dropped and a test waits out "
              "1-3 s retransmits, which measures the backlog rather than the relay."),
    Workload(
        "relay-echo-50", "echo ping-pong through a relay, 50 connections, 64 bytes",
        "round trips/s", run_relay_echo(50, 64), RELAY_TCP_SIDES, quick=False, rounds=3,
        notes="The p50/p99 columns against the direct row show the latency one hop adds."),
    Workload(
        "tls-relay", "bulk through a relay that terminates TLS (tls in, plain out)", "MiB/s",
        run_tls_relay,
        [Side("sockit relay", "{sockit} relay -q " + TLS_CERT_OPTS +
              " tls://127.0.0.1:{port} tcp://127.0.0.1:{target}", under_test=True),
         Side("socat OPENSSL-LISTEN", "socat OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
              "cert={cert},key={key},verify=0 TCP:127.0.0.1:{target}")],
        notes="Client: `sockit connect --insecure tls://...` reading the bulk file (the same "
              "for both); receiver `loadgen bulk-recv` checks every byte. Target: at least "
              "socat's throughput."),
    Workload(
        "tls-handshakes", "full TLS handshakes per second (openssl s_time -new)", "handshakes/s",
        run_tls_handshakes,
        [Side("sockit listen -k", "{sockit} listen -k -q " + TLS_CERT_OPTS +
              " tls://127.0.0.1:{port}", under_test=True),
         Side("socat OPENSSL-LISTEN fork", "socat OPENSSL-LISTEN:{port},bind=127.0.0.1,"
              "reuseaddr,fork,cert={cert},key={key},verify=0 SYSTEM:true"),
         Side("ncat --ssl -k", "ncat --ssl --ssl-cert {cert} --ssl-key {key} -l -k 127.0.0.1 "
              "{port}")],
        quick=False, rounds=3,
        notes="socat forks per connection; ncat and sockit handshake in one process."),
]


# ---------------------------------------------------------------------------
# Word count: `sockit wc` against a local `sockit serve wc`, versus GNU wc
# ---------------------------------------------------------------------------

WC_TEXTS = ("en-seed000.txt", "fr-seed001.txt", "ru-seed002.txt", "zh-seed003.txt")
WC_FILE_BYTES = {False: 256 * MIB, True: 64 * MIB}  # by ctx.quick
_wc_files: Dict[str, str] = {}       # ctx.tmp -> the text file
_wc_expected: Dict[tuple, List[int]] = {}  # (ctx.tmp, locale) -> GNU wc's counts


def wc_file(ctx):
    """Makes (once per run, in ctx.tmp under /dev/shm, removed with it) the
    text file of the wc workloads: the seeds' English, French, Russian and
    Chinese excerpts from tests/data/wc, repeated to 256 MiB (64 MiB quick)."""
    if ctx.tmp not in _wc_files:
        text = b"".join(open(os.path.join(ROOT, "tests", "data", "wc", n), "rb").read()
                        for n in WC_TEXTS)
        size = WC_FILE_BYTES[ctx.quick]
        path = os.path.join(ctx.tmp, "wc-text.txt")
        with open(path, "wb") as f:
            block = text * ((8 * MIB) // len(text) + 1)
            left = size
            while left:
                piece = block[:min(left, len(block))]
                f.write(piece)
                left -= len(piece)
        _wc_files[ctx.tmp] = path
    return _wc_files[ctx.tmp]


def wc_counts(text):
    """The numbers of a `wc -lwmc FILE` line (lines, words, chars, bytes)."""
    fields = text.split()
    if len(fields) < 4 or not all(f.isdigit() for f in fields[:4]):
        raise BenchError(f"not a wc line: {text.strip()[:200]!r}")
    return [int(f) for f in fields[:4]]


def wc_expected(ctx, locale):
    """GNU wc's counts of the file in locale (run once, outside timing): what
    every side must report."""
    key = (ctx.tmp, locale)
    if key not in _wc_expected:
        out = subprocess.run(["wc", "-lwmc", wc_file(ctx)], env=dict(os.environ, LC_ALL=locale),
                             capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise BenchError(f"wc failed: {out.stderr.strip()}")
        _wc_expected[key] = wc_counts(out.stdout)
    return _wc_expected[key]


def run_wc(locale):
    """Returns a runner for one locale. The sockit side starts `sockit serve
    wc` (not timed), then times `sockit wc -lwmc` of the file over loopback
    from its start to its exit; GNU wc's side times `wc -lwmc` of the same
    file; both run through `env LC_ALL=...`. Their counts must equal GNU
    wc's (run once beforehand), or the run fails. MiB/s of the file."""
    def runner(ctx, side):
        path = wc_file(ctx)
        want = wc_expected(ctx, locale)
        size = os.path.getsize(path)
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            argv = ["env", f"LC_ALL={locale}", "wc", "-lwmc", path]
            if side.under_test:
                out = os.path.join(ctx.tmp, f"wc-serve.{time.monotonic_ns()}.out")
                with open(out, "wb") as f:
                    server = kids.start([ctx.sockit, "serve", "wc", "tcp://127.0.0.1:0"],
                                        "sockit serve wc", stdout=f)
                port = wait_port_announced(server, r"^wc\s+tcp://127\.0\.0\.1:(\d+)", out,
                                           deadline)
                argv = ["env", f"LC_ALL={locale}", ctx.sockit, "wc", f"tcp://127.0.0.1:{port}",
                        "-lwmc", path]
            t0 = time.monotonic_ns()
            client = kids.start(argv, side.name, stdout=subprocess.PIPE)
            text = client.read_rest(deadline)
            if client.wait(deadline) != 0:
                raise BenchError(f"{side.name} exited {client.proc.returncode}: "
                                 f"{client.last_error_line()}")
            got = wc_counts(text)
            if got != want:
                raise BenchError(f"{side.name} counted {got}, GNU wc {want}")
            return Result(size / MIB / ((client.exit_ns - t0) / 1e9))
    return runner


def run_wc_counter(locale):
    """Returns a runner: libsockit's counter alone on the file in memory
    (bench/wc_speed, 64 KiB pieces as the server gets them), which must
    count what GNU wc counts. Its figure is MiB/s, with GB/s on the side."""
    def runner(ctx, side):
        path = wc_file(ctx)
        want = wc_expected(ctx, locale)
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            c = kids.start([os.path.join(ctx.build, "bench", "wc_speed"), "--locale", locale,
                            "--rounds", "1", path], "wc_speed", stdout=subprocess.PIPE)
            text = c.read_rest(deadline)
            if c.wait(deadline) != 0:
                raise BenchError(f"wc_speed exited {c.proc.returncode}: {c.last_error_line()}")
            res = parse_json_line(c, text)
            got = [res["lines"], res["words"], res["chars"], res["bytes"]]
            if got != want:
                raise BenchError(f"wc_speed counted {got}, GNU wc {want}")
            return Result(res["mib_per_sec"], {"GB/s": res["gb_per_sec"]})
    return runner


def wc_sides(locale):
    """The sides of a wc workload in locale."""
    return [
        Side("sockit wc", "{sockit} serve wc tcp://127.0.0.1:0 / env LC_ALL=%s {sockit} wc "
             "tcp://127.0.0.1:{port} -lwmc FILE" % locale, under_test=True),
        Side("GNU wc", "env LC_ALL=%s wc -lwmc FILE" % locale),
        Side("counter alone", "{build}/bench/wc_speed --locale %s FILE (in memory, no network)"
             % locale, reference=True, runner=run_wc_counter(locale)),
    ]


WORKLOADS += [
    Workload(
        "wc-utf8", "word count of a text file in C.UTF-8: `sockit wc` over loopback vs local "
        "`wc`", "MiB/s", run_wc("C.UTF-8"), wc_sides("C.UTF-8"), quick=False,
        notes="The file: the seeds' English, French, Russian and Chinese excerpts repeated to "
              "256 MiB in /dev/shm. Target: sockit at least 5x GNU wc. The counter row is the "
              "server's counting alone (its GB/s in the extra column)."),
    Workload(
        "wc-c", "word count of a text file in C: `sockit wc` over loopback vs local `wc`",
        "MiB/s", run_wc("C"), wc_sides("C"), quick=False,
        notes="The same file. Target: sockit at least 2x GNU wc."),
]


# ---------------------------------------------------------------------------
# Chat: fan-out through `sockit chat serve` versus `ncat --chat`, and the
# server's memory per idle client
# ---------------------------------------------------------------------------

CHAT_SOCKIT = "{sockit} chat serve tcp://127.0.0.1:0 --quiet --no-bot --flood-rate 0"
CHAT_LABELS: Dict[str, str] = {}  # workload name -> what one run is, for its heading


def cpu_seconds(pid):
    """User + system CPU time process pid has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_chat_fanout(receivers, lines, quick_lines, window):
    """Returns a runner: `loadgen fanout` with `receivers` receivers and one
    sender of 64-byte lines through the side; every receiver must get every
    line once and in order (any lost, duplicated, reordered or corrupt line
    fails the run). The figure is line deliveries per second; the server's
    CPU time per delivery (connects included) goes in a side column: on a
    shared 2-core machine where loadgen and server compete, it is the
    steadier of the two."""
    def runner(ctx, side):
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            server, port = start_server(ctx, kids, side, deadline)
            cpu0 = cpu_seconds(server.proc.pid)
            client = kids.start([ctx.loadgen, "fanout", "--connect", f"127.0.0.1:{port}",
                                 "--receivers", str(receivers),
                                 "--count", str(quick_lines if ctx.quick else lines),
                                 "--window", str(window), "--timeout", lg_timeout(ctx)],
                                "loadgen", stdout=subprocess.PIPE)
            res = finish_loadgen(client, deadline)
            if not server.running():
                raise BenchError(f"server exited: {server.last_error_line()}")
            cpu_ns = (cpu_seconds(server.proc.pid) - cpu0) * 1e9
            return Result(res["deliveries_per_sec"], {"lost": res["lost"],
                                                      "p99 µs": res["p99_us"],
                                                      "server CPU ns/delivery":
                                                          cpu_ns / res["deliveries"]})
    return runner


CHAT_IDLE_CLIENTS = {False: 10000, True: 2000}  # by ctx.quick
CHAT_SETTLE_S = 3.0  # idle clients' empty buffers are freed within 2 s (server.h)


def rss_kib(pid):
    """VmRSS of process pid in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def run_chat_idle_rss(ctx, side):
    """The side holds N idle clients (`loadgen hold`: connected, greeted,
    then silent); its RSS is read before they connect and again once they
    have been idle for CHAT_SETTLE_S. The figure is idle clients per MiB of
    RSS (higher is better); KiB per client in the side column. loadgen
    fails the run if the server closed any client."""
    n = CHAT_IDLE_CLIENTS[ctx.quick]
    deadline = time.monotonic() + ctx.run_timeout
    with Children(ctx) as kids:
        server, port = start_server(ctx, kids, side, deadline)
        before = rss_kib(server.proc.pid)
        hold = kids.start([ctx.loadgen, "hold", "--connect", f"127.0.0.1:{port}",
                           "--conns", str(n), "--timeout", lg_timeout(ctx)],
                          "loadgen", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        res = json.loads(hold.read_line(deadline))
        if res.get("errors") or res.get("held") != n:
            raise BenchError(f"loadgen hold: {res.get('error') or res}")
        settle = time.monotonic() + CHAT_SETTLE_S
        while time.monotonic() < settle:
            if not server.running():
                raise BenchError(f"server exited: {server.last_error_line()}")
            time.sleep(0.1)
        after = rss_kib(server.proc.pid)
        hold.proc.stdin.close()  # the clients go; loadgen exits 0 if none was dropped
        rc = hold.wait(deadline)
        if rc != 0:
            raise BenchError(f"loadgen hold exited {rc}: {hold.last_error_line()}")
        per_client = max(after - before, 1) / n
        return Result(1024 / per_client, {"KiB per client": per_client,
                                          "RSS MiB": after / 1024})


CHAT_LABELS.update({
    "chat-fanout-50": "20,000 lines (2,000 quick)",
    "chat-fanout-200": "10,000 lines",
    "chat-fanout-1000": "5,000 lines",
    "chat-idle-rss": "10,000 idle clients (2,000 quick)",
})

WORKLOADS += [
    Workload(
        "chat-fanout-50", "chat fan-out: 50 receivers, one sender, 64-byte lines, 64 in flight",
        "deliveries/s", run_chat_fanout(50, 20000, 2000, 64),
        [Side("sockit", CHAT_SOCKIT, port=SOCKIT_PORT, under_test=True),
         Side("ncat --chat", "ncat -l -k --chat 127.0.0.1 {port}", quick=False)],
        notes="`loadgen fanout --receivers 50 --window 64`: every receiver must get every "
              "line once, in order (a lost line fails the run). ncat's default "
              "--max-conns (100) is enough here. ncat's listen backlog (10) drops SYNs "
              "while the receivers connect; loadgen makes such a connect again after "
              "20 ms rather than wait for the kernel's retry a second later (all before "
              "the clock starts). A quick run has sockit alone."),
    Workload(
        "chat-fanout-200", "chat fan-out: 200 receivers, one sender, 64-byte lines, 64 in flight",
        "deliveries/s", run_chat_fanout(200, 10000, 2000, 64),
        [Side("sockit", CHAT_SOCKIT, port=SOCKIT_PORT, under_test=True),
         Side("ncat --chat --max-conns 2000", "ncat -l -k --chat --max-conns 2000 127.0.0.1 {port}")],
        quick=False,
        notes="The largest size ncat survives: at 500 receivers it stalls (select(), "
              "FD_SETSIZE 1024), so the 1,000-receiver run is sockit alone."),
    Workload(
        "chat-fanout-1000", "chat fan-out: 1,000 receivers, one sender, 64-byte lines, "
        "256 in flight", "deliveries/s", run_chat_fanout(1000, 5000, 1000, 256),
        [Side("sockit", CHAT_SOCKIT, port=SOCKIT_PORT, under_test=True)],
        quick=False,
        notes="Target: at least 1,000,000 deliveries per second, none lost."),
    Workload(
        "chat-idle-rss", "chat: server memory per idle client", "idle clients per MiB",
        run_chat_idle_rss,
        [Side("sockit", "{sockit} chat serve tcp://127.0.0.1:0 --quiet", port=SOCKIT_PORT,
              under_test=True)],
        quick=False, rounds=3,
        notes="`loadgen hold --conns 10000`: each client connected and greeted, then idle; "
              "RSS growth over the server's RSS before they came, 3 s after. Target: at "
              "most 4 KiB per client (at least 256 clients per MiB)."),
]

# ---------------------------------------------------------------------------
# Chat over WebSocket: the fan-out through the chat's web side (/ws) against
# the same fan-out over the line protocol, on the same kind of server
# ---------------------------------------------------------------------------

CHAT_WEB_SOCKIT = CHAT_SOCKIT + " --web tcp://127.0.0.1:0"
SOCKIT_PAGE_PORT = r"chat page: http://127\.0\.0\.1:(\d+)/"


def exit_text(rc):
    """An exit status in words: "exited 3" or "killed by SIGSEGV"."""
    if rc is not None and rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited {rc}"


def run_chat_fanout_web(receivers, lines, quick_lines, window, ws):
    """Returns a runner: `loadgen fanout` through `sockit chat serve ... --web
    ...`, over the line protocol on the chat port, or (ws) over WebSocket on
    the web port: every client upgrades /ws, the sender sends one masked text
    frame per line, and each receiver checks every event it gets exactly as
    the line mode does (a lost, duplicated, reordered or cut line fails the
    run). Both transports start the same server command, so alternating them
    compares the transports alone. Figure and side columns as
    run_chat_fanout's, plus the generator's own CPU time per delivery (it
    shares the two cores with the server, so its cost is in the figure too,
    and its WebSocket side decodes frames and checks UTF-8). Afterwards the
    server is stopped with SIGTERM and must exit 0: one that crashes while
    its clients leave fails the run."""
    def runner(ctx, side):
        deadline = time.monotonic() + ctx.run_timeout
        with Children(ctx) as kids:
            server, port = start_server(ctx, kids, side, deadline)
            if ws:
                port = wait_port_announced(server, SOCKIT_PAGE_PORT, server.err_path, deadline)
            cpu0 = cpu_seconds(server.proc.pid)
            client = kids.start([ctx.loadgen, "fanout", "--connect", f"127.0.0.1:{port}",
                                 "--receivers", str(receivers),
                                 "--count", str(quick_lines if ctx.quick else lines),
                                 "--window", str(window), "--timeout", lg_timeout(ctx)]
                                + (["--ws", "/ws"] if ws else []),
                                "loadgen", stdout=subprocess.PIPE)
            res = finish_loadgen(client, deadline)
            cpu_ns = (cpu_seconds(server.proc.pid) - cpu0) * 1e9  # a zombie's /proc still reads
            server.proc.send_signal(signal.SIGTERM)
            rc = server.wait(deadline)
            if rc != 0:
                raise BenchError(f"server {exit_text(rc)} after the run: "
                                 f"{server.last_error_line() or 'no message'}")
            return Result(res["deliveries_per_sec"], {"lost": res["lost"],
                                                      "p99 µs": res["p99_us"],
                                                      "server CPU ns/delivery":
                                                          cpu_ns / res["deliveries"],
                                                      "loadgen CPU ns/delivery":
                                                          res["cpu_seconds"] * 1e9
                                                          / res["deliveries"]})
    return runner


def chat_web_sides(receivers, lines, quick_lines, window):
    """The two sides of a chat-fanout-ws workload: WebSocket (the side under
    test, so the ratio column reads WebSocket / line protocol) and the line
    protocol, both against the same server command."""
    return [
        Side("sockit chat, WebSocket", CHAT_WEB_SOCKIT, port=SOCKIT_PORT, under_test=True,
             runner=run_chat_fanout_web(receivers, lines, quick_lines, window, True)),
        Side("sockit chat, line protocol", CHAT_WEB_SOCKIT, port=SOCKIT_PORT,
             runner=run_chat_fanout_web(receivers, lines, quick_lines, window, False)),
    ]


CHAT_WS_NOTES = ("`loadgen fanout --ws /ws` against `loadgen fanout` on the same server "
                 "command, alternately: WebSocket clients upgrade /ws (random key, 101 and "
                 "Sec-WebSocket-Accept checked), send masked text frames and verify every "
                 "event frame as the line mode verifies lines. **Here the ratio column is "
                 "WebSocket / line protocol** (target: at least 0.7).")

CHAT_LABELS.update({
    "chat-fanout-ws-100": "5,000 lines, quick 2,000",
    "chat-fanout-ws-1000": "5,000 lines",
})

WORKLOADS += [
    Workload(
        "chat-fanout-ws-100", "chat fan-out over WebSocket vs the line protocol: 100 "
        "receivers, one sender, 64-byte lines, 64 in flight", "deliveries/s", None,
        chat_web_sides(100, 5000, 2000, 64), notes=CHAT_WS_NOTES),
    Workload(
        "chat-fanout-ws-1000", "chat fan-out over WebSocket vs the line protocol: 1,000 "
        "receivers, one sender, 64-byte lines, 256 in flight", "deliveries/s", None,
        chat_web_sides(1000, 5000, 1000, 256), quick=False, notes=CHAT_WS_NOTES),
]

# ---------------------------------------------------------------------------
# File transfer: `sockit send` / `sockit receive` versus nc, socat, tar | nc
# ---------------------------------------------------------------------------

XFER_BYTES = {False: 1 << 30, True: 128 * MIB}   # the big file, by ctx.quick
XFER_MID = 512 * MIB                               # the file of xfer-512mib
XFER_SMALL = {False: 10000, True: 2000}            # the small files, by ctx.quick
XFER_LABELS: Dict[str, str] = {}                   # workload name -> its heading's size
_xfer_inputs: Dict[tuple, tuple] = {}              # (ctx.tmp, kind) -> (path, bytes, files)


def xfer_input(ctx, kind):
    """Makes (once per run, in ctx.tmp on /dev/shm) the big file or the
    tree of small files (sizes 0..8 KiB, 100 directories); returns
    (path, total bytes, number of files)."""
    key = (ctx.tmp, kind)
    if key not in _xfer_inputs:
        if kind in ("big", "mid"):
            path = os.path.join(ctx.tmp, f"xfer-{kind}.bin")
            size = XFER_BYTES[ctx.quick] if kind == "big" else XFER_MID
            block = bytearray(os.urandom(MIB))
            with open(path, "wb") as f:
                for i in range(size // MIB):
                    block[:8] = i.to_bytes(8, "big")
                    f.write(block)
            _xfer_inputs[key] = (path, size, 1)
        else:
            path = os.path.join(ctx.tmp, "xfer-small")
            n, total = XFER_SMALL[ctx.quick], 0
            rnd = os.urandom(8192)
            for i in range(n):
                d = os.path.join(path, f"d{i % 100:03d}")
                os.makedirs(d, exist_ok=True)
                size = (i * 7919) % 8193
                with open(os.path.join(d, f"f{i:05d}.dat"), "wb") as f:
                    f.write(i.to_bytes(4, "big") + rnd[:max(size - 4, 0)] if size >= 4 else b"x" * size)
                total += size
            _xfer_inputs[key] = (path, total, n)
    return _xfer_inputs[key]


def xfer_check(src, out, total, files):
    """The output must hold exactly the input's files and bytes; for a
    single file, sampled blocks must match too (sockit checks SHA-256
    itself; nc and socat check nothing, so the driver looks)."""
    if os.path.isfile(src):
        got = os.path.join(out, os.path.basename(src))
        if not os.path.isfile(got) or os.path.getsize(got) != total:
            raise BenchError(f"{got}: {os.path.getsize(got) if os.path.exists(got) else 'no'} "
                             f"bytes, expected {total}")
        with open(src, "rb") as a, open(got, "rb") as b:
            for off in (0, total // 3, total // 2, max(total - MIB, 0)):
                a.seek(off)
                b.seek(off)
                if a.read(65536) != b.read(65536):
                    raise BenchError(f"{got}: bytes differ near offset {off}")
        return
    n, size = 0, 0
    for d, _, names in os.walk(out):
        for name in names:
            n += 1
            size += os.path.getsize(os.path.join(d, name))
    if (n, size) != (files, total):
        raise BenchError(f"received {n} files, {size} bytes; expected {files}, {total}")


def xfer_cpu(tx, rx, total):
    """CPU seconds per GiB moved, user and system, of the sender and of the
    receiver (their rusage from os.wait4, children included: a pipeline's
    shell waits for its commands). Wall time on a shared machine is noise;
    this is what each end costs."""
    out = {}
    for side, child in (("tx", tx), ("rx", rx)):
        if child.rusage:
            out[f"{side} user s/GiB"] = child.rusage.ru_utime * (1 << 30) / total
            out[f"{side} sys s/GiB"] = child.rusage.ru_stime * (1 << 30) / total
    return out


def xfer_runner(kind, receive, send):
    """A runner for one side: `receive` listens (templates: {sockit},
    {port}, {out}), then `send` ({src}, {srcdir}, {name}) is started; the
    figure is MiB (of file content) per second from the sender's start to
    the moment both have exited, which the receiver does once it has
    everything. Commands run through sh -c for their pipes and redirects."""
    def runner(ctx, side):
        src, total, files = xfer_input(ctx, kind)
        out = os.path.join(ctx.tmp, f"xfer-out.{time.monotonic_ns()}")
        os.mkdir(out)
        deadline = time.monotonic() + ctx.run_timeout
        fill = dict(sockit=shlex.quote(ctx.sockit), out=shlex.quote(out), src=shlex.quote(src),
                    srcdir=shlex.quote(os.path.dirname(src)),
                    name=shlex.quote(os.path.basename(src)))
        try:
            with Children(ctx) as kids:
                if "{port}" in receive:
                    port = free_port()
                    rx = kids.start(["sh", "-c", receive.format(port=port, **fill)], side.name + "-rx")
                    wait_listening(rx, port, deadline)
                else:
                    rx = kids.start(["sh", "-c", receive.format(**fill)], side.name + "-rx")
                    port = wait_port_announced(rx, SOCKIT_PORT, rx.err_path, deadline)
                start = time.monotonic_ns()
                tx = kids.start(["sh", "-c", send.format(port=port, **fill)], side.name + "-tx")
                while (rx.exit_ns is None or tx.exit_ns is None) and time.monotonic() < deadline:
                    wait_any([rx, tx], deadline)   # each exit seen the moment it happens
                check_exit(tx, deadline, "sender")
                check_exit(rx, deadline, "receiver")
                ns = max(rx.exit_ns, tx.exit_ns) - start
            xfer_check(src, out, total, files)
            return Result(total / MIB / (ns / 1e9), xfer_cpu(tx, rx, total))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return runner


XFER_RECV = "exec {sockit} receive --yes --dir {out} tcp://127.0.0.1:0"
XFER_SEND = "exec {sockit} send tcp://127.0.0.1:{port} {src}"
XFER_LABELS.update({"xfer-1gib": f"{XFER_BYTES[False] >> 20} MiB file, quick {XFER_BYTES[True] >> 20} MiB",
                    "xfer-512mib": f"{XFER_MID >> 20} MiB file",
                    "xfer-small-files": f"{XFER_SMALL[False]} files, quick {XFER_SMALL[True]}"})

WORKLOADS += [
    Workload(
        "xfer-1gib", "one big file, /dev/shm to /dev/shm over loopback", "MiB/s", None,
        [Side("sockit", "sockit receive --yes --dir OUT / sockit send FILE",
              under_test=True, runner=xfer_runner("big", XFER_RECV, XFER_SEND)),
         Side("nc (OpenBSD)", "nc -l > OUT/FILE / nc -N < FILE",
              runner=xfer_runner("big", "exec nc -l 127.0.0.1 {port} > {out}/{name}",
                                 "exec nc -N 127.0.0.1 {port} < {src}")),
         Side("socat", "socat -u TCP-LISTEN CREATE:OUT/FILE / socat -u OPEN:FILE TCP",
              runner=xfer_runner("big", "exec socat -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr "
                                        "CREATE:{out}/{name}",
                                 "exec socat -u OPEN:{src} TCP:127.0.0.1:{port}"))],
        quick=False, rounds=3,
        notes="sockit checks SHA-256 end to end, fsyncs and renames into place; nc and socat "
              "check nothing (the driver compares sizes and sampled blocks). The s/GiB "
              "columns are CPU seconds per GiB of each end (rusage), user and system: on a "
              "shared machine they, not the rate, are the figures to compare. Targets: "
              "sockit at least 0.65x nc (xfer-512mib), the receiver's system time at most "
              "0.5 s per GiB."),
    Workload(
        "xfer-512mib", "one 512 MiB file, /dev/shm to /dev/shm over loopback, against nc",
        "MiB/s", None,
        [Side("sockit", "sockit receive --yes --dir OUT / sockit send FILE",
              under_test=True, runner=xfer_runner("mid", XFER_RECV, XFER_SEND)),
         Side("nc (OpenBSD)", "nc -l > OUT/FILE / nc -N < FILE",
              runner=xfer_runner("mid", "exec nc -l 127.0.0.1 {port} > {out}/{name}",
                                 "exec nc -N 127.0.0.1 {port} < {src}"))],
        quick=False, rounds=5,
        notes="The rate target of issue 21 (at least 0.65x nc, SHA-256 checked on both ends): "
              "five alternating rounds, the median of the per-round ratios."),
    Workload(
        "xfer-small-files", "a tree of small files (0-8 KiB, 100 directories), /dev/shm to "
        "/dev/shm", "MiB/s", None,
        [Side("sockit", "sockit receive --yes --dir OUT / sockit send DIR",
              under_test=True, runner=xfer_runner("small", XFER_RECV, XFER_SEND)),
         Side("tar + nc (OpenBSD)", "nc -l, tar -x / tar -c DIR, nc -N",
              runner=xfer_runner("small", "nc -l 127.0.0.1 {port} | tar -C {out} -xf -",
                                 "tar -C {srcdir} -cf - {name} | nc -N 127.0.0.1 {port}"))],
        quick=False,
        notes="sockit sends a manifest first, checks SHA-256 per file and fsyncs in batches "
              "(one syncfs per 64 files; free on tmpfs); tar | nc checks nothing."),
]

# ---- file transfer over TLS: the same file, tls:// against tcp:// --------------------

def run_xfer_tls(tls):
    """A runner for xfer-tls: the big file of xfer-1gib sent by `sockit send`
    to `sockit receive` on a port the driver picks, over tls:// (the
    receiver with the run's certificate, the sender trusting it with --ca:
    a full verification, as between two people with --pin) or over plain
    tcp://. Timed like xfer_runner; the ratio column reads TLS / plain."""
    def runner(ctx, side):
        cert, key = (shlex.quote(p).replace("{", "{{").replace("}", "}}") for p in tls_pair(ctx))
        scheme = "tls" if tls else "tcp"
        recv_tls = f"--cert {cert} --key {key} " if tls else ""
        send_tls = f"--ca {cert} " if tls else ""
        return xfer_runner(
            "big",
            "exec {sockit} receive --yes " + recv_tls + "--dir {out} " + scheme +
            "://127.0.0.1:{port}",
            "exec {sockit} send " + send_tls + scheme + "://127.0.0.1:{port} {src}")(ctx, side)
    return runner


XFER_LABELS["xfer-tls"] = f"{XFER_BYTES[False] >> 20} MiB file, quick {XFER_BYTES[True] >> 20} MiB"

WORKLOADS += [
    Workload(
        "xfer-tls", "one big file over TLS vs plain, /dev/shm to /dev/shm over loopback", "MiB/s",
        None,
        [Side("sockit over TLS", "sockit receive --cert CERT --key KEY tls:// / "
              "sockit send --ca CERT tls:// FILE", under_test=True, runner=run_xfer_tls(True)),
         Side("sockit plain TCP", "sockit receive tcp:// / sockit send tcp:// FILE",
              reference=True, runner=run_xfer_tls(False))],
        quick=False,
        notes="The same commands but for TLS: the ratio is TLS / plain, what encryption costs "
              "a transfer. Over TLS the content goes through the session (pread, SSL_write; "
              "SSL_read, pwrite) instead of sendfile() and splice(); both verify SHA-256 and "
              "fsync."),
]

# ---------------------------------------------------------------------------
# Running rounds
# ---------------------------------------------------------------------------

@dataclass
class Row:
    """Everything measured for one side of one workload."""
    side: Side
    values: List[float] = field(default_factory=list)      # one per counted round
    extras: List[Dict[str, float]] = field(default_factory=list)
    failure: str = ""                                      # first failure, if any
    rounds: List[int] = field(default_factory=list)        # round numbers of values


def run_one(ctx, workload, side):
    """Runs one side once. Returns a Result, or a failure reason."""
    if side.under_test and not os.access(ctx.sockit, os.X_OK):
        return f"no sockit binary at {ctx.sockit}"
    runner = side.runner or workload.runner
    try:
        return runner(ctx, side)
    except BenchError as e:
        return str(e)
    except Exception as e:  # a bug in a runner must not end the whole run
        return f"driver error: {type(e).__name__}: {e}"


QUICK_ROUNDS = 5
MIN_ROUNDS = 3


def rounds_for(ctx, workload):
    """Counted rounds of workload in this run: --rounds when given, 5 in a
    quick run, else the workload's own (5, or 3 for the costly ones, so
    that a full run covers every workload in about 10 minutes)."""
    if ctx.rounds:
        return ctx.rounds
    return QUICK_ROUNDS if ctx.quick else workload.rounds


def run_workload(ctx, workload, budget_end, log):
    """Runs warm-up plus rounds_for() rounds of every side of workload,
    alternating sides. A side that fails once is not run again. The budget
    is checked before each round (a round once begun runs to its end), so
    a workload that starts after the budget is used up gets no round at
    all. Returns (rows, rounds actually counted)."""
    rows = [Row(s) for s in workload.sides if s.quick or not ctx.quick]
    counted, rounds = 0, rounds_for(ctx, workload)
    for rnd in range(rounds + 1):
        if time.monotonic() > budget_end:
            log(f"  time budget used up: stopping after {counted} rounds")
            break
        order = rows if rnd % 2 == 1 or rnd == 0 else list(reversed(rows))
        parts = []
        for row in order:
            if row.failure:
                continue
            out = run_one(ctx, workload, row.side)
            if isinstance(out, str):
                row.failure = f"{'warm-up' if rnd == 0 else f'round {rnd}'}: {out}"
                parts.append(f"{row.side.name} FAILED")
                continue
            parts.append(f"{row.side.name} {out.value:.0f}")
            if rnd > 0:
                row.values.append(out.value)
                row.extras.append(out.extra)
                row.rounds.append(rnd)
        label = "warm-up" if rnd == 0 else f"round {rnd}/{rounds}"
        log(f"  {label}: " + ", ".join(parts))
        if rnd > 0:
            counted += 1
    return rows, counted


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def sh(argv):
    """First line of a command's output, or '?' when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, text=True)
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_info(ctx):
    """CPU model, cores, kernel, date and tool versions, as (label, text)."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    dpkg = lambda p: sh(["dpkg-query", "-W", "-f=${Version}", p])
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", model),
        ("cores", f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable (nproc)"),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("load average at start", load),
        ("sockit", sh([ctx.sockit, "--version"]) if os.access(ctx.sockit, os.X_OK) else "not built"),
        ("peers", f"socat {dpkg('socat')}, ncat {dpkg('ncat')}, netcat-openbsd "
                  f"{dpkg('netcat-openbsd')}, iperf3 {dpkg('iperf3')}, "
                  f"python {platform.python_version()}"),
    ]


def fmt(v):
    """A figure with about three significant digits."""
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def sockit_row(rows):
    return next((r for r in rows if r.side.under_test), None)


def per_round_ratios(mine, other):
    """sockit/other for each round both completed, in round order."""
    theirs = dict(zip(other.rounds, other.values))
    return [v / theirs[r] for r, v in zip(mine.rounds, mine.values) if r in theirs and theirs[r] > 0]


def table(workload, rows, counted, ctx):
    """The markdown section of one workload."""
    size = f"{ctx.bulk_bytes // MIB} MiB" if workload.name.startswith("bulk") else \
        f"{ctx.echo_seconds:g} s per run"
    if workload.name.startswith("wc-"):
        size = f"{WC_FILE_BYTES[ctx.quick] // MIB} MiB file"
    if workload.name in ("relay-iperf3", "tls-relay"):
        size = f"{ctx.bulk_bytes // MIB} MiB"
    if workload.name == "relay-redis":
        size = f"{REDIS_REQUESTS[ctx.quick]:,} requests per test"
    size = CHAT_LABELS.get(workload.name, size)
    size = XFER_LABELS.get(workload.name, size)
    out = [f"## {workload.name}: {workload.title} ({size})", ""]
    if workload.notes:
        out += [workload.notes, ""]
    out += [f"{workload.unit}, higher is better; {counted} rounds after a warm-up. "
            "Ratio = sockit / program: above 1 means sockit is faster.", ""]
    extra_keys = sorted({k for r in rows for e in r.extras for k in e})
    head = ["program", "command", f"median {workload.unit}", "min–max"] + \
        [f"median {k}" for k in extra_keys] + ["sockit/program per round", "median ratio"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    me = sockit_row(rows)
    for row in rows:
        name = row.side.name + (" (reference)" if row.side.reference else "")
        if row.side.under_test:
            name = f"**{name}**"
        cmd = "`" + row.side.cmd.format(sockit="sockit", port="PORT", build="build",
                                        echo_ceiling="echo_ceiling", bench="bench",
                                        target="TARGET", cert="CERT", key="KEY") + "`"
        if row.failure or not row.values:
            reason = (row.failure or "no rounds ran").replace("|", "\\|")
            cells = [name, cmd, f"FAILED ({reason})", "—"] + ["—"] * len(extra_keys) + ["—", "—"]
        else:
            med = statistics.median(row.values)
            cells = [name, cmd, fmt(med), f"{fmt(min(row.values))}–{fmt(max(row.values))}"]
            for k in extra_keys:
                xs = [e[k] for e in row.extras if k in e]
                cells.append(fmt(statistics.median(xs)) if xs else "—")
            if row is me:
                cells += ["—", "—"]
            elif me and not me.failure and me.values:
                ratios = per_round_ratios(me, row)
                cells += [" ".join(f"{x:.2f}" for x in ratios) or "—",
                          f"**{statistics.median(ratios):.2f}**" if ratios else "—"]
            else:
                cells += ["—", "— (sockit failed)"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    return out


def write_report(path, ctx, info, sections, elapsed, args_text, cut_short):
    """Writes results.md atomically (temp file, then rename)."""
    lines = ["# sockit benchmark results", "",
             f"Generated by `bench/run.py {args_text}` (what `make bench"
             + (" QUICK=1" if ctx.quick else "") + f"` runs) in {elapsed:.0f} s. "
             "Each program ran once per round, alternating; the warm-up round is not counted. "
             "**Quote the ratios**: absolute numbers on a shared machine are noise. "
             "See docs/benchmarks.md for how to read this.", ""]
    if cut_short:
        lines += ["**The run hit its time budget; some workloads have fewer rounds.**", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info] + [""]
    for s in sections:
        lines += s
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def raise_fd_limit():
    """1000-connection workloads need more than the usual 1024 descriptors,
    in the load generator and in every server; children inherit this."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="CMake build directory (default: build)")
    ap.add_argument("--quick", action="store_true", help="small sizes, 5 rounds, under a minute")
    ap.add_argument("--rounds", type=int,
                    help=f"counted rounds for every workload (at least {MIN_ROUNDS}; default: "
                         f"5, or 3 for the costly workloads; quick {QUICK_ROUNDS})")
    ap.add_argument("--workload", action="append", metavar="NAME",
                    help="run only this workload (repeatable; may name a pending one)")
    ap.add_argument("--all", action="store_true", help="also run pending workloads")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"), help="report path")
    ap.add_argument("--list", action="store_true", help="list workloads and exit")
    args = ap.parse_args(argv)

    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:16} {w.title}{'  [pending]' if w.pending else ''}")
        return 0
    build = os.path.abspath(args.build)
    raise_fd_limit()
    rounds = max(MIN_ROUNDS, args.rounds) if args.rounds else None
    chosen = [w for w in WORKLOADS
              if (args.workload and w.name in args.workload) or
              (not args.workload and (args.all or not w.pending) and
               (w.quick or not args.quick))]
    unknown = set(args.workload or []) - {w.name for w in WORKLOADS}
    if unknown or not chosen:
        print(f"run.py: unknown workload(s) {sorted(unknown)}; see --list", file=sys.stderr)
        return 2

    tmp = tempfile.mkdtemp(prefix="sockit-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ctx = Ctx(build=build, quick=args.quick, rounds=rounds,
              bulk_bytes=(32 if args.quick else 256) * MIB,
              run_timeout=15.0 if args.quick else 30.0,
              echo_seconds=0.3 if args.quick else 0.5, tmp=tmp)
    for prog in (ctx.loadgen, ctx.echo_ceiling):
        if not os.access(prog, os.X_OK):
            print(f"run.py: {prog} is missing; build first (make build)", file=sys.stderr)
            return 1
    missing = [p for p in ("socat", "ncat", "nc", "iperf3") if not shutil.which(p)]
    if missing:
        print(f"run.py: peers missing: {' '.join(missing)} (scripts/install-deps --bench); "
              "their rows will fail", file=sys.stderr)

    # Whole-run budget: under 1 minute quick, under 10 full, with margin.
    started = time.monotonic()
    budget_end = started + (50 if args.quick else 540)

    def log(msg):
        print(msg, flush=True)

    info = machine_info(ctx)
    log("sockit benchmarks: " + "; ".join(f"{k} {v}" for k, v in info[:4]))
    sections, cut_short = [], False
    try:
        for w in chosen:
            log(f"{w.name}: {w.title} ({w.unit})")
            rows, counted = run_workload(ctx, w, budget_end, log)
            cut_short |= counted < rounds_for(ctx, w)
            sections.append(table(w, rows, counted, ctx))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started
    args_text = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    write_report(args.out, ctx, info, sections, elapsed, args_text, cut_short)
    print()
    for s in sections:
        print("\n".join(s))
    print(f"wrote {os.path.relpath(args.out)} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
