"""`make install` (cmake --install) lays out the binary, both libraries,
the headers and libsockit.pc, and a program built against the installed
copy with pkg-config runs: the library example from docs/library.md."""

import os
import re
import shutil
import socket
import subprocess

import pytest

from conftest import WAIT, expect_recv, tcp_connect

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

PROGRAM = r"""
#include <ctype.h>
#include <stdio.h>
#include <sockit/sockit.h>

static sk_server_t *server;

static void on_data(sk_conn_t *c, sk_buf_t *in, int eof) {
  size_t n;
  long used;
  (void)eof;
  while ((used = sk_line_next(in, 4096, &n)) > 0) {
    char line[4096];
    for (size_t i = 0; i < n; i++)
      line[i] = (char)toupper((unsigned char)sk_buf_head(in)[i]);
    if (sk_conn_out_space(c) < n + 1)
      return;
    sk_conn_send(c, line, n);
    sk_conn_send(c, "\n", 1);
    sk_buf_consume(in, (size_t)used);
    if (n == 4 && line[0] == 'S')   /* "stop" */
      sk_server_stop(server);
  }
}

int main(void) {
  static const sk_handler_t h = {.on_data = on_data};
  sk_server_opts_t o = {.handler = &h, .idle_timeout_ms = 30000, .grace_ms = 200};
  sk_endpoint_t ep;
  char err[SK_ERRLEN], addr[SK_ENDPOINT_STRLEN];
  sk_server_new(&server, &o);
  sk_endpoint_parse(&ep, "tcp://127.0.0.1:0", SK_EP_LISTEN, err, sizeof err);
  if (sk_server_listen(server, &ep, NULL, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  printf("%s %s\n", sk_version(),
         sk_sockaddr_format(&sk_server_listener(server, 0)->bound, addr, sizeof addr));
  fflush(stdout);
  int r = sk_server_run(server, 1);
  sk_server_free(server);
  return r < 0;
}
"""


@pytest.fixture(scope="module")
def prefix(tmp_path_factory, sockit_bin):
    build = os.path.dirname(sockit_bin)
    dest = tmp_path_factory.mktemp("prefix")
    r = subprocess.run(["cmake", "--install", build, "--prefix", str(dest)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dest


def test_layout(prefix):
    libdir = next(d for d in ("lib", "lib64", "lib/x86_64-linux-gnu")
                  if os.path.exists(prefix / d / "libsockit.a"))
    for rel in ("bin/sockit", f"{libdir}/libsockit.a", f"{libdir}/pkgconfig/libsockit.pc",
                "include/sockit/sockit.h", "include/sockit/server.h", "share/man/man1/sockit.1"):
        assert (prefix / rel).exists(), rel
    assert any(n.startswith("libsockit.so") for n in os.listdir(prefix / libdir))
    r = subprocess.run([str(prefix / "bin/sockit"), "--version"], capture_output=True)
    assert r.returncode == 0 and r.stdout.startswith(b"sockit ")


def test_only_the_api_is_exported(prefix):
    libdir = next(p for p in prefix.rglob("libsockit.so"))
    r = subprocess.run(["nm", "-D", "--defined-only", str(libdir)], capture_output=True,
                       text=True)
    names = [l.split()[-1] for l in r.stdout.splitlines() if " T " in l]
    assert names and all(n.startswith("sk_") for n in names), names
    assert not any(n.startswith("sk__") for n in names)
    # The application codecs (chat, wc, file transfer) are the binary's own
    # wire formats, linked from a private static library, not libsockit's ABI.
    app = [n for n in names if n.startswith(("sk_chat", "sk_wc", "sk_xfer"))]
    assert not app, app
    for header in ("chat.h", "wc.h", "xfer.h"):
        assert not (prefix / "include/sockit" / header).exists(), header
    static = next(p for p in prefix.rglob("libsockit.a"))
    r = subprocess.run(["nm", "--defined-only", str(static)], capture_output=True, text=True)
    assert not re.search(r" T sk_(chat|wc|xfer)", r.stdout)


def test_program_built_with_pkg_config(prefix, tmp_path, run):
    if not shutil.which("cc"):
        pytest.fail("no C compiler")
    src = tmp_path / "upper.c"
    src.write_text(PROGRAM)
    env = dict(os.environ, PKG_CONFIG_PATH=":".join(str(p.parent) for p in
                                                     prefix.rglob("libsockit.pc")))
    def pc(*args):
        return subprocess.run(["pkg-config", *args, "libsockit"], capture_output=True,
                              text=True, env=env, check=True).stdout.split()
    extra = []
    # A sanitizer build's library needs the sanitizer runtimes linked in.
    cache = open(os.path.join(os.path.dirname(run.bin), "CMakeCache.txt")).read()
    if re.search(r"^SK_SANITIZE:BOOL=ON$", cache, re.M):
        extra = ["-fsanitize=address,undefined"]
    libdir = pc("--variable=libdir")[0]
    builds = {
        # static: the archive itself, plus what Libs.private asks for
        "upper-static": [os.path.join(libdir, "libsockit.a")] + pc("--libs-only-other",
                                                                    "--static"),
        # shared: -L/-l from the .pc file, found at run time through an rpath
        "upper-shared": pc("--libs") + [f"-Wl,-rpath,{libdir}"],
    }
    for name, libs in builds.items():
        r = subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", *extra, *pc("--cflags"),
                            "-o", str(tmp_path / name), str(src), *libs],
                           capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        exercise(run, str(tmp_path / name))


def exercise(run, exe):
    p = run.spawn([str(exe)], name="upper")
    m = p.out.wait_for(rb"^(\d+\.\d+\.\d+) 127\.0\.0\.1:(\d+)$")
    with tcp_connect("127.0.0.1", int(m.group(2))) as s:
        s.sendall(b"hello\r\nworld\n")
        expect_recv(s, b"HELLO\nWORLD\n")
        s.sendall(b"stop\n")
        expect_recv(s, b"STOP\n")
    assert p.wait(timeout=WAIT) == 0
