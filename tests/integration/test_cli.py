"""Help, version and usage errors (docs/cli.md: exit 2 for a bad option or
endpoint, one "sockit: ..." line on stderr naming the problem)."""

import re
import os

import pytest

from conftest import REPO


def project_version():
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*sockit\s+VERSION\s+([0-9.]+)", f.read())
    assert m, "no project VERSION in CMakeLists.txt"
    return m.group(1)


def assert_one_error_line(err):
    """docs/cli.md: an error is one "sockit: ..." line. A usage error may be
    followed by a pointer to the help ("Try 'sockit connect --help' ...")."""
    first, *rest = err.splitlines()
    assert first.startswith("sockit: "), err
    assert all(line.startswith("Try 'sockit") for line in rest), f"more than one line: {err!r}"


# ---- help and version -------------------------------------------------------

def test_help_lists_commands(run):
    rc, out, err = run.run("--help")
    assert rc == 0, err
    text = out.decode()
    assert "usage" in text.lower()
    for cmd in ("connect", "listen"):
        assert cmd in text


@pytest.mark.parametrize("argv", [("help", "connect"), ("connect", "--help")])
def test_connect_help(run, argv):
    rc, out, err = run.run(*argv)
    assert rc == 0, err
    text = out.decode()
    assert "usage" in text.lower()
    assert "connect" in text
    for opt in ("--connect-timeout", "--idle-timeout", "--crlf", "--source",
                "--no-shutdown", "--chunk"):
        assert opt in text, f"{opt} missing from `sockit {' '.join(argv)}`"


@pytest.mark.parametrize("argv", [("help", "listen"), ("listen", "--help")])
def test_listen_help(run, argv):
    rc, out, err = run.run(*argv)
    assert rc == 0, err
    text = out.decode()
    assert "usage" in text.lower()
    for opt in ("--keep-open", "--max-conns", "--allow", "--deny", "--port-file"):
        assert opt in text, f"{opt} missing from `sockit {' '.join(argv)}`"


def test_help_texts_agree(run):
    """`sockit help connect` and `sockit connect --help` are the same text."""
    assert run.run("help", "connect")[1] == run.run("connect", "--help")[1]


def test_version(run):
    rc, out, err = run.run("--version")
    assert rc == 0, err
    assert project_version() in out.decode(), out


def test_unknown_command(run):
    rc, out, err = run.run("frobnicate")
    assert rc == 2
    assert err.startswith("sockit:"), err
    assert "frobnicate" in err


# ---- bad endpoints ------------------------------------------------------------

LONG_PATH = "/tmp/" + "p" * 120


@pytest.mark.parametrize("cmd,ep,needle", [
    ("connect", "tcp://127.0.0.1:99999", "port 99999 out of range 1-65535"),
    ("connect", "udp://127.0.0.1:65536", "out of range"),
    ("listen", "tcp://127.0.0.1:70000", "out of range"),
    ("connect", "tcp://127.0.0.1:0", "port"),          # connect needs a real port
    ("connect", "tcp://127.0.0.1", "port"),            # missing port
    ("connect", "tcp://127.0.0.1:", "port"),           # empty port
    ("listen", "tcp://127.0.0.1", "port"),
    ("connect", "tcp://127.0.0.1:8x", "port"),
    ("connect", "foo://127.0.0.1:80", "scheme"),       # unknown scheme
    ("connect", "127.0.0.1:80", ""),                   # no scheme at all
    ("connect", "tcp://:80", "host"),                  # connect needs a host
    ("connect", "tcp://[::1:80", ""),                  # unclosed bracket
    ("connect", f"unix:{LONG_PATH}", "long"),          # > 107 bytes of sun_path
    ("listen", f"unix:{LONG_PATH}", "long"),
    ("listen", f"unix-dgram:{LONG_PATH}", "long"),
    ("connect", "unix-seqpacket:@" + "a" * 120, "long"),
    ("connect", "unix:", "path"),                      # empty path
])
def test_bad_endpoint(run, cmd, ep, needle):
    rc, out, err = run.run(cmd, ep)
    assert rc == 2, f"exit {rc}, stderr {err!r}"
    assert out == b""
    # The endpoint is quoted (a long one may be cut short), then the reason.
    prefix = f"sockit: bad endpoint '{ep[:60]}"
    assert err.startswith(prefix), f"stderr {err!r} does not start with {prefix!r}"
    reason = err.split("': ", 1)[1] if "': " in err else ""
    assert needle in reason, f"{needle!r} not in the reason of {err!r}"
    assert_one_error_line(err)


def test_bad_endpoint_doc_example(run):
    """The exact line docs/cli.md shows."""
    rc, out, err = run.run("connect", "tcp://localhost:99999")
    assert rc == 2
    assert err.splitlines()[0] == ("sockit: bad endpoint 'tcp://localhost:99999': "
                                   "port 99999 out of range 1-65535")
    assert_one_error_line(err)


# ---- bad options --------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (("connect", "--frobnicate", "tcp://127.0.0.1:9"), "--frobnicate"),
    (("listen", "--frobnicate", "tcp://127.0.0.1:0"), "--frobnicate"),
    (("connect",), ""),                                          # no endpoint
    (("listen",), ""),
    (("connect", "tcp://127.0.0.1:9", "tcp://127.0.0.1:10"), ""),  # two endpoints
    (("connect", "tcp://127.0.0.1:9", "--idle-timeout"), "--idle-timeout"),  # no value
    (("connect", "--idle-timeout", "abc", "tcp://127.0.0.1:9"), "abc"),
    (("connect", "--connect-timeout", "soon", "tcp://127.0.0.1:9"), "soon"),
    (("listen", "--keep-open", "--max-conns", "many", "tcp://127.0.0.1:0"), "many"),
    (("listen", "--allow", "999.1.2.3/8", "tcp://127.0.0.1:0"), "999.1.2.3/8"),
    (("listen", "--deny", "10.0.0.0/33", "tcp://127.0.0.1:0"), "10.0.0.0/33"),
])
def test_bad_option(run, argv, needle):
    rc, out, err = run.run(*argv)
    assert rc == 2, f"`sockit {' '.join(argv)}` exited {rc}, stderr {err!r}"
    assert_one_error_line(err)
    assert needle in err.splitlines()[0], f"{needle!r} not in {err!r}"
