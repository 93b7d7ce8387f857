"""Two test hosts in network namespaces joined by a veth pair (run as root).

    from faults.netns import NetPair, unavailable_reason

    with NetPair() as net:                   # hosts net.a (10.9.0.1), net.b (10.9.0.2)
        net.b.loss(5, dport=9000)            # nft: drop 5% of what B receives on :9000
        net.a.rate("200mbit")                # tbf on A's side of the link
        srv = net.b.popen([sockit, "listen", "tcp://10.9.0.2:9000"], ...)
        net.b.wait_listening(9000)
        cli = net.a.popen([sockit, "connect", "tcp://10.9.0.2:9000"], ...)
        ...
        assert net.b.dropped() > 0           # the fault really happened

Every pair gets namespace and interface names unique to this process and
pair (``skf<pid>x<n>a`` / ``...b``); addresses are 10.x and exist only inside
those namespaces.  Teardown runs on every path: ``with`` exit (exceptions
and KeyboardInterrupt included), ``close()``, atexit, and SIGTERM (see
cleanup.py).  Namespaces left behind by a run killed with SIGKILL are swept
the next time a pair is built (their pid no longer exists).

Faults (see docs/testing.md for what exists on these machines; no netem):

- ``loss(percent)``: nftables ``numgen random`` drop on the receiving host's
  input hook.  The sender's stack is not told: real loss, real retransmits.
- ``rate(rate)``: tbf on the host's egress.
- ``reorder(percent)``: nftables moves a random share of the host's egress
  packets (``meta priority set``) into an HTB class capped at a low rate;
  those packets wait for that class's tokens while the rest go on, so they
  arrive late: out of order, with no packet lost.  The delay is queueing
  delay, not a fixed number of milliseconds.
- ``reject_reset(port)``, ``blackhole(port)``: nft ``reject with tcp reset``
  and silent ``drop`` on the input hook.
- ``kill_connections(port)``: ``ss -K`` (the killed socket's peer gets a RST).

Only the standard library is used.
"""

import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time

from . import cleanup

__all__ = ["NetPair", "Host", "FaultSetupError", "unavailable_reason"]

PREFIX = "skf"
TABLE = "sockit_chaos"
_NAME_RE = re.compile(r"^%s(\d+)x(\d+)[ab]$" % PREFIX)
_counter = itertools.count(1)
_live = {}
_live_lock = threading.Lock()


class FaultSetupError(RuntimeError):
    """A namespace, nft or tc command needed to build a fault failed."""


def _cmd(argv, check=True, timeout=20, input_text=None):
    """Runs a setup command; returns CompletedProcess (text).  On failure
    raises FaultSetupError naming the command and its stderr."""
    try:
        r = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FaultSetupError("%s: %s" % (" ".join(argv), e)) from None
    if check and r.returncode != 0:
        raise FaultSetupError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                    r.stderr.strip()))
    return r


_reason_cache = None


def unavailable_reason():
    """Returns None when network namespaces can be made here, else a
    one-line reason (for pytest.skip): not root, or `ip netns add` fails.
    Probes by really creating and deleting a namespace; cached per process.
    A missing nft or tc is not a reason to skip (scripts/install-deps
    installs them): it fails the test with FaultSetupError instead."""
    global _reason_cache
    if _reason_cache is not None:
        return _reason_cache or None
    reason = ""
    if os.geteuid() != 0:
        reason = "needs root (network namespaces, nftables, tc); CI runs as root"
    else:
        probe = "%s%dx0a" % (PREFIX, os.getpid())
        try:
            _cmd(["ip", "netns", "add", probe], timeout=10)
            _cmd(["ip", "netns", "del", probe], check=False, timeout=10)
        except FaultSetupError as e:
            reason = "cannot make a network namespace: %s" % e
    _reason_cache = reason
    return reason or None


def _sweep_stale():
    """Deletes namespaces this kit made in runs that no longer exist."""
    r = _cmd(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not cleanup.pid_running(int(m.group(1))):
            _kill_ns_procs(name)
            _cmd(["ip", "netns", "del", name], check=False)


def _kill_ns_procs(ns):
    """SIGKILLs every process still inside namespace ns (only namespaces
    this kit created are ever passed here), and reaps nothing: they are
    either our Popen children (reaped by the caller) or orphans."""
    r = _cmd(["ip", "netns", "pids", ns], check=False)
    for tok in r.stdout.split():
        try:
            os.kill(int(tok), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass


def _close_all_live():
    with _live_lock:
        pairs = list(_live.values())
    for p in pairs:
        p.close()


cleanup.register(_close_all_live)


class Host:
    """One end of the pair: namespace ``ns``, interface ``dev``, address
    ``addr``; ``peer_addr`` is the other end's address."""

    def __init__(self, pair, ns, dev, addr, peer_addr):
        self.pair = pair
        self.ns = ns
        self.dev = dev
        self.addr = addr
        self.peer_addr = peer_addr
        self._rate = None        # tbf arguments, or None
        self._reorder = None     # (percent, match, slow_rate), or None
        self._nft_ready = False
        self._rule_no = 0

    def __repr__(self):
        return "Host(%s %s %s)" % (self.ns, self.dev, self.addr)

    # ---- running commands ---------------------------------------------------

    def argv(self, cmd):
        """The argv that runs cmd (a list) inside this namespace.  `ip netns
        exec` execs the command itself, so a Popen's pid is the command's."""
        return ["ip", "netns", "exec", self.ns] + list(cmd)

    def run(self, cmd, timeout=30, **kw):
        """subprocess.run(cmd) inside the namespace, bounded by timeout."""
        return subprocess.run(self.argv(cmd), timeout=timeout, **kw)

    def popen(self, cmd, **kw):
        """subprocess.Popen(cmd) inside the namespace.  The process is killed
        at teardown if it is still running; wait for it yourself, bounded."""
        p = subprocess.Popen(self.argv(cmd), **kw)
        self.pair._procs.append(p)
        return p

    def _ns_cmd(self, cmd, **kw):
        return _cmd(self.argv(cmd), **kw)

    # ---- nftables -------------------------------------------------------------

    def nft(self, script):
        """Feeds an nft script to this namespace's nftables."""
        self._ns_cmd(["nft", "-f", "-"], input_text=script)

    def _ensure_table(self):
        if self._nft_ready:
            return
        self.nft("""
table inet %(t)s {
  chain input  { type filter hook input priority 0; policy accept; }
  chain output { type filter hook output priority 0; policy accept; }
}
""" % {"t": TABLE})
        self._nft_ready = True

    def _add_rule(self, chain, body, tag):
        """Appends `body counter ... comment "tagN"` to chain; returns the
        comment, by which counters() reports the rule."""
        self._ensure_table()
        self._rule_no += 1
        comment = "%s%d" % (tag, self._rule_no)
        self.nft('add rule inet %s %s %s comment "%s"\n' % (TABLE, chain, body, comment))
        return comment

    @staticmethod
    def _match(proto, dport, sport):
        parts = []
        if dport is not None:
            parts.append("%s dport %d" % (proto, dport))
        if sport is not None:
            parts.append("%s sport %d" % (proto, sport))
        if not parts:
            parts.append("meta l4proto %s" % proto)
        return " ".join(parts)

    @staticmethod
    def _chance(percent):
        """An nft expression true for `percent` % of packets (0.01 steps)."""
        if not 0 < percent <= 100:
            raise ValueError("percent must be in (0, 100]")
        return "numgen random mod 10000 < %d" % round(percent * 100)

    def loss(self, percent, dport=None, sport=None, proto="tcp"):
        """Drops percent % of the packets this host receives from the link
        (input hook, veth only: loopback traffic inside the namespace is not
        touched), optionally only those to dport / from sport."""
        return self._add_rule(
            "input", 'iifname "%s" %s %s counter drop'
            % (self.dev, self._match(proto, dport, sport), self._chance(percent)), "loss")

    def reject_reset(self, port, proto="tcp"):
        """Answers every segment arriving for port with a TCP reset: new
        connects are refused, established senders get ECONNRESET."""
        return self._add_rule(
            "input", 'iifname "%s" %s dport %d counter reject with tcp reset'
            % (self.dev, proto, port), "reset")

    def blackhole(self, port, proto="tcp"):
        """Silently drops everything arriving for port (a dead peer)."""
        return self._add_rule(
            "input", 'iifname "%s" %s dport %d counter drop' % (self.dev, proto, port),
            "blackhole")

    def clear_rules(self):
        """Removes every input rule added by loss/reject_reset/blackhole."""
        if self._nft_ready:
            self.nft("flush chain inet %s input\n" % TABLE)

    def counters(self):
        """{comment: packets} for every rule added through this object."""
        if not self._nft_ready:
            return {}
        r = self._ns_cmd(["nft", "-j", "list", "table", "inet", TABLE])
        out = {}
        for item in json.loads(r.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            for e in rule.get("expr", []):
                if isinstance(e, dict) and "counter" in e:
                    out[rule["comment"]] = e["counter"]["packets"]
        return out

    def dropped(self):
        """Packets dropped so far by this host's loss rules."""
        return sum(v for k, v in self.counters().items() if k.startswith("loss"))

    # ---- qdiscs ---------------------------------------------------------------

    def rate(self, rate="200mbit", burst="64kb", latency="100ms"):
        """Caps this host's egress on the link with tbf (tc units: 200mbit,
        64kb = 64 KiB).  burst must hold at least one MTU-sized packet."""
        self._rate = (rate, burst, latency)
        self._apply_qdisc()

    def reorder(self, percent, dport=None, sport=None, proto="tcp", slow_rate="10mbit"):
        """Reorders this host's egress: percent % of the matching packets
        go through an HTB class capped at slow_rate (a one-packet bucket),
        so they are held back behind each other while the other packets
        pass them.  Nothing is dropped (the slow class queues up to 10000
        packets).  Returns the nft rule comment (counters() counts the
        packets that were sent the slow way)."""
        self._reorder = (percent, slow_rate)
        self._apply_qdisc()
        return self._add_rule(
            "output", 'oifname "%s" %s %s counter meta priority set 2:20'
            % (self.dev, self._match(proto, dport, sport), self._chance(percent)),
            "reorder")

    def clear_qdisc(self):
        """Removes rate cap and reordering."""
        self._rate = self._reorder = None
        if self._nft_ready:
            self.nft("flush chain inet %s output\n" % TABLE)
        self._apply_qdisc()

    def _apply_qdisc(self):
        tc = ["tc"]
        self._ns_cmd(tc + ["qdisc", "del", "dev", self.dev, "root"], check=False)
        htb_parent = "root"
        if self._rate is not None:
            rate, burst, latency = self._rate
            self._ns_cmd(tc + ["qdisc", "add", "dev", self.dev, "root", "handle", "1:",
                               "tbf", "rate", rate, "burst", burst, "latency", latency])
            htb_parent = "parent 1:1"
        if self._reorder is not None:
            _, slow = self._reorder
            self._ns_cmd(tc + ["qdisc", "add", "dev", self.dev] + htb_parent.split()
                         + ["handle", "2:", "htb", "default", "10"])
            self._ns_cmd(tc + ["class", "add", "dev", self.dev, "parent", "2:",
                               "classid", "2:10", "htb", "rate", "100gbit",
                               "quantum", "200000"])
            self._ns_cmd(tc + ["class", "add", "dev", self.dev, "parent", "2:",
                               "classid", "2:20", "htb", "rate", slow, "ceil", slow,
                               "burst", "1600", "cburst", "1600"])
            self._ns_cmd(tc + ["qdisc", "add", "dev", self.dev, "parent", "2:20",
                               "handle", "20:", "pfifo", "limit", "10000"])

    def qdisc_stats(self):
        """`tc -s qdisc show` and `tc -s class show` output for the link."""
        q = self._ns_cmd(["tc", "-s", "qdisc", "show", "dev", self.dev]).stdout
        c = self._ns_cmd(["tc", "-s", "class", "show", "dev", self.dev]).stdout
        return q + c

    def qdisc_drops(self):
        """Packets the qdiscs on the link dropped (tbf over its latency
        bound, a full queue): loss the test did not ask for."""
        q = self._ns_cmd(["tc", "-s", "qdisc", "show", "dev", self.dev]).stdout
        return sum(int(n) for n in re.findall(r"dropped (\d+)", q))

    # ---- sockets ----------------------------------------------------------

    def kill_connections(self, port):
        """Destroys this host's established TCP sockets on local or remote
        port `port` with `ss -K`; their peers get a RST.  Returns how many
        sockets were killed."""
        flt = "( sport = :%d or dport = :%d )" % (port, port)
        r = self._ns_cmd(["ss", "-K", "-Htn", "state", "established", flt])
        return len([ln for ln in r.stdout.splitlines() if ln.strip()])

    def nstat(self, *names):
        """{name: value} of this namespace's SNMP counters since it was
        made (e.g. TcpExtTCPOFOQueue, TcpRetransSegs); absent ones are 0."""
        r = self._ns_cmd(["nstat", "-az", "--json"] + list(names))
        data = json.loads(r.stdout)
        counters = data.get("kernel", data)
        return {n: int(counters.get(n, 0)) for n in names}

    def listening(self, port, proto="tcp"):
        """True when something in this namespace listens on port."""
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        r = self._ns_cmd(["ss", flag, "sport = :%d" % port], check=False)
        return bool(r.stdout.strip())

    def wait_listening(self, port, timeout=5.0, proc=None, proto="tcp"):
        """Waits, at most timeout seconds, until port listens.  Raises
        TimeoutError, or RuntimeError when proc exits first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.listening(port, proto):
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError("process exited (%s) before listening on %d"
                                   % (proc.returncode, port))
            if time.monotonic() > deadline:
                raise TimeoutError("nothing listens on %s:%d after %.1f s"
                                   % (self.ns, port, timeout))
            time.sleep(0.02)


class NetPair:
    """Two namespaces, a and b, joined by one veth pair.  Use as a context
    manager, or call close() yourself (atexit does it as a last resort).

    subnet: the first three octets of a private 10.x /24 (a is .1, b is .2).
    segment: when true (the default) the link carries MTU-sized packets:
    GSO/GRO sizes are set to the MTU, so loss and reordering act on real
    1500-byte segments instead of 64 KiB offload super-packets."""

    def __init__(self, subnet="10.9.0", segment=True, mtu=1500):
        if not re.match(r"^10\.\d{1,3}\.\d{1,3}$", subnet):
            raise ValueError("subnet must be 10.X.Y")
        n = next(_counter)
        stem = "%s%dx%d" % (PREFIX, os.getpid(), n)
        if len(stem) + 1 > 15:
            raise ValueError("interface name too long: %s" % stem)
        self.name = stem
        self._procs = []
        self._closed = True
        self._segment = segment
        self._mtu = mtu
        self.a = Host(self, stem + "a", stem + "a", subnet + ".1", subnet + ".2")
        self.b = Host(self, stem + "b", stem + "b", subnet + ".2", subnet + ".1")

    def open(self):
        """Builds the namespaces and the link.  On any failure, tears down
        what was built and raises FaultSetupError."""
        cleanup.register(_close_all_live)
        _sweep_stale()
        self._closed = False
        with _live_lock:
            _live[id(self)] = self
        try:
            a, b = self.a, self.b
            _cmd(["ip", "netns", "add", a.ns])
            _cmd(["ip", "netns", "add", b.ns])
            _cmd(["ip", "link", "add", a.dev, "netns", a.ns, "type", "veth",
                  "peer", "name", b.dev, "netns", b.ns])
            for h in (a, b):
                _cmd(["ip", "-n", h.ns, "link", "set", "lo", "up"])
                _cmd(["ip", "-n", h.ns, "addr", "add", h.addr + "/24", "dev", h.dev])
                link = ["ip", "-n", h.ns, "link", "set", h.dev, "mtu", str(self._mtu)]
                if self._segment:
                    # gso_max_size alone still lets TCP build 2-segment
                    # skbs (tcp_min_tso_segs); gso_max_segs 1 makes it one.
                    link += ["gso_max_size", str(self._mtu), "gso_max_segs", "1",
                             "gro_max_size", str(self._mtu)]
                _cmd(link)
                _cmd(["ip", "-n", h.ns, "link", "set", h.dev, "up"])
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        """Kills what still runs in the namespaces and deletes them.
        Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            try:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
            except Exception:
                pass
        for h in (self.a, self.b):
            try:
                _kill_ns_procs(h.ns)
                _cmd(["ip", "netns", "del", h.ns], check=False)
            except Exception:
                pass
        with _live_lock:
            _live.pop(id(self), None)

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False
