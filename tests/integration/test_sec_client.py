"""The terminal chat client against a hostile server (issue 19, finding 5).

A fake chat server (a Python socket on loopback, port 0) speaks the line
protocol of docs/chat.md and puts terminal controls into the names the
client draws in its prompt and keeps in its state: C1 controls encoded in
UTF-8 (U+009D OSC ... U+009C ST, U+009B CSI, U+0085 NEL) and ESC sequences
in the nick of HELLO and NICK, the room of JOIN and NICK, and the names of
PART, HIST, MSG, WHO and ROOM lines. The real client runs on a
pseudo-terminal (terminal mode: raw input, the prompt line with the nick
and room) and in plain mode; every byte it writes is captured.

What must hold: no C1 control (bytes C2 80 - C2 9F), no OSC (ESC ]), no
ESC or BEL from the server reaches the terminal; each line with a bad nick
or room is dropped with one note that quotes it cleaned; valid lines around
them are shown and the prompt carries the valid nick and room."""

import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import termios
import time

from conftest import SANITIZER_MARKS, WAIT

HELLO_OSC = b"HELLO 1 ev\xc2\x9d0;pwned\xc2\x9cil #lobby welcome, evil\n"
HOSTILE = [
    b"NICK #lobby alice \xc2\x9b31mbob\n",            # CSI in the new nick
    b"JOIN #r\xc2\x9d0;pwned\xc2\x9c alice\n",         # OSC ... ST in a room
    b"JOIN #r\x1b]0;pwned\x07 alice\n",               # ESC ] ... BEL in a room
    b"NICK #x\x1b[2J alice carol\n",                  # ESC [ in the room of NICK
    b"PART #lobby \xc2\x85mallory\n",                 # NEL in a nick
    b"HIST 2026-11-22T02:35:11Z MSG #lo\xc2\x9bbby bob old\n",  # inside history
    b"MSG #lobby b\xc2\x9bob hi\n",                   # a sender
    b"WHO #lobby 2 alice \xc2\x9d0;x\xc2\x9c\n",          # a nick of a list
    b"ROOM #lo\xc2\x85bby 1\n",                       # a room of a list
]
DROPPED = b"! dropped a line from the server with "
C1 = re.compile(rb"\xc2[\x80-\x9f]")
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # the client's own colours


def visible(out):
    """What the terminal shows as text: out without the client's colours."""
    return SGR.sub(b"", out)


class FakeServer:
    """One listening socket on 127.0.0.1 (port 0); accepts one client."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(WAIT)
        self.port = self.ls.getsockname()[1]
        self.conn = None

    def accept(self):
        self.conn, _ = self.ls.accept()
        self.conn.settimeout(WAIT)

    def send(self, *lines):
        self.conn.sendall(b"".join(lines))

    def close(self):
        for s in (self.conn, self.ls):
            if s:
                s.close()


class PtyClient:
    """`sockit chat` with its standard input and output on a pseudo-terminal
    of 100x30; everything it writes there is kept in self.out."""

    def __init__(self, sockit_bin, port):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = dict(os.environ, TERM="xterm")
        env.pop("NO_COLOR", None)
        self.p = subprocess.Popen([sockit_bin, "chat", f"tcp://127.0.0.1:{port}"],
                                  stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                                  env=env, start_new_session=True)
        os.close(slave)
        self.out = b""

    def read_until(self, data, timeout=None):
        """Reads the terminal until the regex `data` (bytes) matches what it
        shows (colours left out); fails with what came when that does not
        happen within the deadline."""
        deadline = time.monotonic() + (WAIT if timeout is None else timeout)
        while not re.search(data, visible(self.out)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {data!r} on the terminal within the deadline; "
                                     f"got {self.out[-600:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the client is gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"the client ended before {data!r}; got {self.out[-600:]!r}")
            self.out += chunk

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(WAIT)
        err = self.p.stderr.read()
        self.p.stderr.close()
        os.close(self.master)
        assert not any(m in err for m in SANITIZER_MARKS), err[-3000:]


def assert_clean(out):
    """Nothing the hostile server sent acts on the terminal."""
    m = C1.search(out)
    assert not m, f"a C1 control reached the terminal: {out[max(0, m.start() - 60):m.end() + 60]!r}"
    assert b"\x1b]" not in out, f"an OSC reached the terminal: {out!r}"
    assert b"\x07" not in out and b"\x1b[2J" not in out, f"server controls reached it: {out!r}"
    assert b"pwned\x07" not in out and b"\xc2\x9c" not in out


def test_tty_prompt_and_lines_with_c1_and_esc_in_names(sockit_bin):
    srv = FakeServer()
    cl = PtyClient(sockit_bin, srv.port)
    try:
        srv.accept()
        srv.send(HELLO_OSC)
        cl.read_until(rb"welcome, evil")          # the HELLO's text, or the note quoting it
        # a valid greeting: its nick and room make the prompt
        srv.send(b"HELLO 1 alice #lobby welcome\n", b"JOIN #lobby alice\n")
        cl.read_until(rb"\* alice joined #lobby")
        srv.send(*HOSTILE)
        srv.send(b"MSG #lobby bob all done\n")
        cl.read_until(rb"all done\r\n\r[^\r\n]*> \x1b\[K")  # and the prompt drawn after it
        assert_clean(cl.out)
        out = visible(cl.out)
        # every hostile line is dropped with exactly one note, quoted cleaned
        assert out.count(DROPPED) == 1 + len(HOSTILE), out
        assert "HELLO 1 ev\ufffd0;pwned\ufffdil #lobby".encode() in out
        assert "JOIN #r\ufffd]0;pwned\ufffd alice".encode() in out
        assert b" alice joined #r" not in out and b"is now" not in out
        assert b" left " not in out and b"] bob: old" not in out and b"* in #lobby" not in out
        # the prompt kept the valid names: every prompt after HELLO is alice's in #lobby
        prompts = re.findall(rb"\r([^\r\n\x1b]*> )\x1b\[K", out)
        assert prompts and set(prompts[prompts.index(b"alice #lobby> "):]) == {b"alice #lobby> "}, \
            prompts
        # the line being typed is drawn cleaned too: a pasted OSC does nothing
        os.write(cl.master, b"hi \xc2\x9d0;typed\xc2\x9c")
        cl.read_until("alice #lobby> hi \ufffd0;typed\ufffd\x1b\\[K".encode())
        assert_clean(cl.out)
    finally:
        cl.stop()
        srv.close()


def test_plain_mode_drops_bad_lines_with_one_note_each(run):
    srv = FakeServer()
    try:
        p = run.sockit("chat", f"tcp://127.0.0.1:{srv.port}", name="sockit chat")
        srv.accept()
        srv.send(HELLO_OSC, b"HELLO 1 alice #lobby welcome\n", b"JOIN #lobby alice\n", *HOSTILE,
                 b"MSG #lobby bob all done\n")
        p.out.wait_for(rb"^\[#lobby\] bob: all done$")
        lines = p.out.value().decode("utf-8").split("\n")
        assert lines[:13] == [
            "! dropped a line from the server with a bad nick or room: "
            "HELLO 1 ev\ufffd0;pwned\ufffdil #lobby welcome, evil",
            "* welcome",
            "* alice joined #lobby",
            "! dropped a line from the server with a bad nick or room: "
            "NICK #lobby alice \ufffd31mbob",
            "! dropped a line from the server with a bad nick or room: "
            "JOIN #r\ufffd0;pwned\ufffd alice",
            "! dropped a line from the server with control characters or empty fields: "
            "JOIN #r\ufffd]0;pwned\ufffd alice",
            "! dropped a line from the server with control characters or empty fields: "
            "NICK #x\ufffd[2J alice carol",
            "! dropped a line from the server with a bad nick or room: "
            "PART #lobby \ufffdmallory",
            "! dropped a line from the server with a bad nick or room: "
            "HIST 2026-11-22T02:35:11Z MSG #lo\ufffdbby bob old",
            "! dropped a line from the server with a bad nick or room: MSG #lobby b\ufffdob hi",
            "! dropped a line from the server with a bad nick or room: "
            "WHO #lobby 2 alice \ufffd0;x\ufffd",
            "! dropped a line from the server with a bad nick or room: ROOM #lo\ufffdbby 1",
            "[#lobby] bob: all done",
        ], lines
        assert_clean(p.out.value())
    finally:
        srv.close()
