"""Issue 19, finding 1: UDP services must not answer each other forever.

One datagram whose source is spoofed (a raw socket with a hand-built IPv4
and UDP header) to be the service itself, or a classic answer-everything
port, or another service that answers everything, must not start a reply
loop; a flood from one source gets at most the per-source budget while
another source is still answered; the TCP side is unaffected. The spoofing
runs inside a private network namespace the test creates, where the only
UDP sender is the service: /proc/PID/net/snmp's Udp OutDatagrams is then
exactly the number of datagrams the service sent.
"""

import ctypes
import glob
import itertools
import os
import re
import socket
import struct
import subprocess
import time

import pytest

from conftest import expect_recv, poll_until, recvfrom_msg, tcp_connect
from test_serve import inet, serve

CLONE_NEWNET = 0x40000000
NS_PREFIX = "skudp"
_ns_counter = itertools.count(1)
BURST, RATE = 20, 50  # SK_SERVER_DGRAM_BURST, SK_SERVER_DGRAM_RATE


def _unavailable():
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets)"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "ip netns does not work here"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def _sweep_stale():
    """Namespaces of earlier runs killed before their teardown."""
    for path in glob.glob(f"/run/netns/{NS_PREFIX}*"):
        m = re.match(rf"{NS_PREFIX}(\d+)x\d+$", os.path.basename(path))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            subprocess.run(["ip", "netns", "del", os.path.basename(path)], capture_output=True)


class Netns:
    """A private network namespace with only loopback, up. `inside()` runs
    a function with the calling thread in it: sockets made and processes
    started there stay there."""

    def __init__(self):
        _sweep_stale()
        self.name = f"{NS_PREFIX}{os.getpid()}x{next(_ns_counter)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True,
                       capture_output=True)

    def inside(self, fn, *args, **kw):
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        ns = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(ns)
            try:
                return fn(*args, **kw)
            finally:
                _setns(home)
        finally:
            os.close(ns)
            os.close(home)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    ns = Netns()
    yield ns
    ns.close()


def udp_out(pid):
    """Udp OutDatagrams of process pid's network namespace."""
    with open(f"/proc/{pid}/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("OutDatagrams")])


def udp_rx_queue(pid, port):
    """Bytes waiting in the receive queue of the UDP socket on `port` in
    process pid's network namespace."""
    with open(f"/proc/{pid}/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no UDP socket on port {port}")


def spoofed_udp(src, dst, payload):
    """An IPv4 packet carrying one UDP datagram from src to dst ((host, port)
    each); the kernel fills in the IP checksum and id, the UDP checksum is 0
    (none, allowed over IPv4)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + udp


def raw_sender():
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)


def count_sent(pid, window=1.0):
    """Datagrams the namespace sends within `window` seconds from now, read
    until the count has been still for half the window or the window ends
    (a loop never stops moving it)."""
    start = last = udp_out(pid)
    deadline = time.monotonic() + window
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = udp_out(pid)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= window / 2:
            break
    return last - start


def serve_in(netns, run, *args):
    return netns.inside(serve, run, *args)


def tcp_round_trip(netns, host, port, data):
    s = netns.inside(tcp_connect, host, port)
    try:
        s.sendall(data)
        expect_recv(s, data)
    finally:
        s.close()


# ---- one datagram, spoofed from the service itself -------------------------------------------

@pytest.mark.parametrize("svc", ["echo", "upper", "daytime", "time"])
def test_spoofed_own_source_gets_no_answer(run, netns, svc):
    p, t = serve_in(netns, run, svc, "udp://127.0.0.1:0", "tcp://127.0.0.1:0")
    host, port = inet(t[svc][0])
    raw = netns.inside(raw_sender)
    before = udp_out(p.pid)
    raw.sendto(spoofed_udp((host, port), (host, port), b"loop me\n"), (host, 0))
    sent = count_sent(p.pid)
    raw.close()
    assert udp_out(p.pid) - before == 0 and sent == 0, sent   # without the fix: ~100,000
    # It did arrive, and was dropped for the right reason.
    p.err.wait_for(rb"1 that could start a reply loop \(last from 127\.0\.0\.1:%d\)" % port)
    if svc in ("echo", "upper"):
        tcp_round_trip(netns, *inet(t[svc][1]), b"still here\n" if svc == "echo" else b"UP\n")


@pytest.mark.parametrize("sport", [7, 13, 19, 37, 17, 123, 0])
def test_classic_loop_ports_get_no_answer(run, netns, sport):
    p, t = serve_in(netns, run, "echo", "udp://127.0.0.1:0")
    host, port = inet(t["echo"][0])
    raw = netns.inside(raw_sender)
    raw.sendto(spoofed_udp(("127.0.0.1", sport), (host, port), b"x"), (host, 0))
    raw.close()
    assert count_sent(p.pid, 0.5) == 0
    p.err.wait_for(rb"1 that could start a reply loop \(last from 127\.0\.0\.1:%d\)" % sport)


@pytest.mark.parametrize("bind", ["udp://0.0.0.0:0", "udp://:0"])  # IPv4; dual-stack IPv6
def test_wildcard_bind_refuses_own_address_and_port(run, netns, bind):
    """Bound to every address: a datagram from our port at the address it
    was sent to (a non-loopback address of the namespace) is ours."""
    subprocess.run(["ip", "-n", netns.name, "link", "add", "d0", "type", "veth", "peer", "name",
                    "d1"], check=True)
    subprocess.run(["ip", "-n", netns.name, "addr", "add", "10.77.0.1/24", "dev", "d0"],
                   check=True)
    subprocess.run(["ip", "-n", netns.name, "link", "set", "d0", "up"], check=True)
    p, t = serve_in(netns, run, "echo", bind)
    port = int(t["echo"][0].rsplit(":", 1)[1])
    raw = netns.inside(raw_sender)
    raw.sendto(spoofed_udp(("10.77.0.1", port), ("10.77.0.1", port), b"x"), ("10.77.0.1", 0))
    raw.close()
    assert count_sent(p.pid, 0.5) == 0
    p.err.wait_for(rb"1 that could start a reply loop \(last from 10\.77\.0\.1:%d\)" % port)
    # An ordinary client on that address is still answered.
    c = netns.inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("10.77.0.1", 0))
    c.sendto(b"hi", ("10.77.0.1", port))
    assert recvfrom_msg(c)[0] == b"hi"
    c.close()


# ---- two services that answer everything, pointed at each other ------------------------------

def test_echo_and_daytime_pointed_at_each_other_stop(run, netns):
    p, t = serve_in(netns, run, "echo", "udp://127.0.0.1:0", "daytime", "udp://127.0.0.1:0",
                    "echo", "tcp://127.0.0.1:0")
    echo, daytime = inet(t["echo"][0]), inet(t["daytime"][0])
    raw = netns.inside(raw_sender)
    before = udp_out(p.pid)
    # echo answers "daytime"; daytime answers echo; and so on, until a budget runs out.
    raw.sendto(spoofed_udp(daytime, echo, b"ping\n"), (echo[0], 0))
    count_sent(p.pid)                       # until it has stopped (or a second passed)
    total = udp_out(p.pid) - before
    raw.close()
    # Each side answers at most a burst (and what refills while it runs).
    assert 2 <= total <= 2 * BURST + 10, total   # without the fix: ~75,000 a second
    assert count_sent(p.pid, 0.5) == 0      # and it has stopped
    p.err.wait_for(rb"over the budget of 50 a second per source")
    tcp_round_trip(netns, *inet(t["echo"][1]), b"tcp still works\n")


# ---- a flood from one source -------------------------------------------------------------------

def test_flood_from_one_source_gets_its_budget_another_source_is_answered(run, netns):
    p, t = serve_in(netns, run, "echo", "udp://127.0.0.1:0")
    host, port = inet(t["echo"][0])
    flood = netns.inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    flood.bind(("127.0.0.1", 0))
    flood.setblocking(False)
    sent = got = 0
    start = time.monotonic()
    while sent < 1000:
        flood.sendto(b"f%d" % sent, (host, port))
        sent += 1
        try:
            while True:
                flood.recv(100)
                got += 1
        except BlockingIOError:
            pass
    p.err.wait_for(rb"over the budget of 50 a second per source \(last from 127\.0\.0\.1:%d\)"
                   % flood.getsockname()[1])
    # The flood may have filled the service's socket buffer (the kernel then
    # drops whatever comes, from anyone): wait until the service has read it.
    poll_until(lambda: udp_rx_queue(p.pid, port) == 0, what="the service to read the flood")
    other = netns.inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    other.sendto(b"me too", (host, port))
    assert recvfrom_msg(other)[0] == b"me too"
    flood.settimeout(0.3)
    try:
        while True:
            flood.recv(100)
            got += 1
    except socket.timeout:
        pass
    elapsed = time.monotonic() - start
    flood.close()
    other.close()
    assert BURST <= got <= BURST + int(elapsed * RATE) + 1, (got, elapsed)


def test_rate_option_changes_the_budget(run, netns):
    p, t = serve_in(netns, run, "--dgram-rate", "1", "--dgram-burst", "3", "echo",
                    "udp://127.0.0.1:0")
    host, port = inet(t["echo"][0])
    c = netns.inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(10):
        c.sendto(b"%d" % i, (host, port))
    p.err.wait_for(rb"over the budget of 1 a second per source")
    got = []
    c.settimeout(0.3)
    try:
        while True:
            got.append(c.recv(100))
    except socket.timeout:
        pass
    c.close()
    assert got[:3] == [b"0", b"1", b"2"] and len(got) <= 4, got


# ---- services with nothing to say stay silent ------------------------------------------------

@pytest.mark.parametrize("svc,why", [("chat", b"the chat needs a stream endpoint"),
                                     ("wc", b"wc needs a byte stream endpoint")])
def test_refusing_services_stay_silent(run, netns, svc, why):
    p, t = serve_in(netns, run, svc, "udp://127.0.0.1:0")
    host, port = inet(t[svc][0])
    c = netns.inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    before = udp_out(p.pid)
    for i in range(5):
        c.sendto(b"hello\n", (host, port))
    p.err.wait_for(rb"datagram from 127\.0\.0\.1:%d dropped: %s" % (c.getsockname()[1], why))
    assert udp_out(p.pid) - before == 5     # the 5 we sent; none from the service
    c.setblocking(False)
    with pytest.raises(BlockingIOError):
        c.recv(100)
    c.close()
    # Logged once, not once per datagram.
    assert p.err.value().count(b"dropped: " + why) == 1
