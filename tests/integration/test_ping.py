"""`sockit ping`: iputils-style output over loopback, the unprivileged ICMP
socket and the raw fallback, missing permissions, replies that never come
(namespaces this test makes itself), and bad usage."""

import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import WAIT

REPLY4 = rb"^64 bytes from 127\.0\.0\.1: icmp_seq=(\d+) ttl=64 time=\d+(\.\d+)? ms$"
REPLY6 = rb"^64 bytes from ::1: icmp_seq=(\d+) ttl=64 time=\d+(\.\d+)? ms$"
STATS = rb"^(\d+) packets transmitted, (\d+) received, ([\d.]+)% packet loss, time \d+ms$"
RTT = rb"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$"


def ping(run, *args, timeout=None):
    return run.run("ping", *args, timeout=timeout or WAIT + 5)


def test_ping_ipv4_loopback(run):
    code, out, err = ping(run, "-c", "3", "-i", "0.1", "127.0.0.1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == b"PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data."
    seqs = [int(re.match(REPLY4, l).group(1)) for l in lines[1:4]]
    assert seqs == [1, 2, 3]
    assert lines[4] == b"" and lines[5] == b"--- 127.0.0.1 ping statistics ---"
    m = re.match(STATS, lines[6])
    assert m and m.group(1) == b"3" and m.group(2) == b"3" and m.group(3) == b"0", lines[6]
    assert re.match(RTT, lines[7])


def test_ping_ipv6_loopback_and_size(run):
    code, out, err = ping(run, "-6", "-c", "2", "-i", "0.1", "-s", "100", "::1")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == b"PING ::1 (::1) 100 data bytes"
    for l in lines[1:3]:
        assert re.match(rb"^108 bytes from ::1: icmp_seq=\d ttl=64 time=[\d.]+ ms$", l), l


def test_ping_a_name_says_it_and_quiet_and_numeric(run):
    code, out, err = ping(run, "-4", "-c", "2", "-i", "0.1", "localhost")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == b"PING localhost (127.0.0.1) 56(84) bytes of data."
    for l in lines[1:3]:
        assert re.match(rb"^64 bytes from localhost \(127\.0\.0\.1\): icmp_seq=\d ttl=64 "
                        rb"time=[\d.]+ ms$", l), l
    code, out, err = ping(run, "-n", "-4", "-c", "1", "localhost")
    assert re.match(REPLY4, out.splitlines()[1]), out
    code, out, err = ping(run, "-q", "-c", "2", "-i", "0.1", "127.0.0.1")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(b"PING 127.0.0.1") and lines[1] == b""
    assert lines[2] == b"--- 127.0.0.1 ping statistics ---" and len(lines) == 5, lines


@pytest.mark.parametrize("args,msg", [
    (["-4", "-6", "127.0.0.1"], "contradict"),
    (["-x", "127.0.0.1"], "unknown option '-x'"),
    (["-c", "0", "127.0.0.1"], "bad -c"),
    (["-s", "4", "127.0.0.1"], "bad -s"),
    (["-i", "0.001", "127.0.0.1"], "bad -i"),
    ([], "missing HOST"),
])
def test_ping_bad_usage(run, args, msg):
    code, out, err = ping(run, *args)
    assert code == 2 and msg in err, err


def test_ping_unknown_host(run):
    code, out, err = ping(run, "-c", "1", "nosuch.invalid")
    assert code == 1 and "sockit: ping nosuch.invalid:" in err, err


# ---- namespaces: socket kinds, permissions, lost replies ------------------------------

def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if not shutil.which("ip"):
        pytest.fail("iproute2 missing: scripts/install-deps installs it")


@pytest.fixture
def netns():
    need_root()
    name = "skping" + uuid.uuid4().hex[:8]
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"ip netns add failed here: {r.stderr.decode().strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def nsrun(ns, *argv, timeout=WAIT + 5):
    # LeakSanitizer cannot run under ptrace (the strace cases); the leak
    # checks run everywhere else.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                          timeout=timeout, env=env)


def test_unprivileged_icmp_socket_is_used_when_allowed(run, netns):
    nsrun(netns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    r = nsrun(netns, "strace", "-f", "-qq", "-e", "trace=socket", run.bin, "ping", "-c", "2",
              "-i", "0.1", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    assert re.search(rb"socket\(AF_INET, SOCK_DGRAM[^)]*IPPROTO_ICMP\) = \d", r.stderr), r.stderr
    assert b"SOCK_RAW" not in r.stderr
    assert re.search(STATS, r.stdout, re.M).group(2) == b"2"


def test_raw_fallback_when_unprivileged_is_off(run, netns):
    nsrun(netns, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
    r = nsrun(netns, "strace", "-f", "-qq", "-e", "trace=socket", run.bin, "ping", "-c", "1",
              "127.0.0.1")
    assert r.returncode == 0, r.stderr
    assert re.search(rb"SOCK_DGRAM[^)]*IPPROTO_ICMP\) = -1 EACCES", r.stderr), r.stderr
    assert re.search(rb"SOCK_RAW[^)]*IPPROTO_ICMP\) = \d", r.stderr), r.stderr


def test_neither_socket_allowed_is_a_clear_error(run, netns):
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) missing")
    nsrun(netns, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
    r = nsrun(netns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all", run.bin, "ping", "-c", "1", "127.0.0.1")
    assert r.returncode == 1, (r.stdout, r.stderr)
    err = r.stderr.decode()
    assert "cannot open an ICMP socket" in err and "ping_group_range" in err \
        and "CAP_NET_RAW" in err, err


def test_replies_that_never_come(run, netns):
    rules = ("table inet t {\n chain in {\n type filter hook input priority 0;\n"
             " icmp type echo-request drop\n }\n}\n")
    r = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=rules.encode(),
                       capture_output=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    r = nsrun(netns, run.bin, "ping", "-c", "2", "-i", "0.1", "-W", "0.5", "127.0.0.1")
    assert r.returncode == 1
    m = re.search(STATS, r.stdout, re.M)
    assert m and m.group(1) == b"2" and m.group(2) == b"0" and m.group(3) == b"100", r.stdout
    assert b"rtt" not in r.stdout
