"""`sockit wc` as a GNU wc user types it: names with control characters
are quoted (never raw escapes to the terminal), --files0-from (a file and
standard input, a zero-length name), --version; counts compared with GNU
wc's."""

import os
import subprocess

from conftest import WAIT
from test_wc import WC, assert_same, env_for, run_both, server  # noqa: F401 (fixture)


def test_control_characters_in_names_are_quoted(sockit_bin, server, tmp_path):
    tcp, _ = server
    names = {"a\x1b[Ab": b"'a'$'\\033''[Ab'", "tab\there": b"'tab'$'\\t''here'",
             "bell\x07": b"'bell'$'\\a'", "del\x7f": b"'del'$'\\177'",
             "plain name": b"plain name"}
    for n in names:
        (tmp_path / n).write_bytes(b"one two\n")
    for name, shown in names.items():
        p = subprocess.run([sockit_bin, "wc", tcp, name], cwd=tmp_path, env=env_for("C"),
                           capture_output=True, timeout=WAIT)
        assert p.returncode == 0 and p.stdout == b"1 2 8 " + shown + b"\n", (name, p)
        assert b"\x1b" not in p.stdout and b"\x07" not in p.stdout
    # In C.UTF-8 a C1 control (U+009B, CSI) is quoted too; printable UTF-8 is not.
    (tmp_path / "c1\u009b31m").write_bytes(b"x\n")
    (tmp_path / "caf\u00e9").write_bytes(b"x\n")
    p = subprocess.run([sockit_bin, "wc", "-l", tcp, "c1\u009b31m", "caf\u00e9"], cwd=tmp_path,
                       env=env_for("C.UTF-8"), capture_output=True, timeout=WAIT)
    assert p.stdout.splitlines() == [b"1 'c1'$'\\302\\233''31m'", "1 caf\u00e9".encode(),
                                     b"2 total"], p


def test_files0_from_a_file_and_from_stdin(sockit_bin, server, tmp_path):
    tcp, _ = server
    for i, text in enumerate((b"a b c\n", b"\n\n", b"words, words\nand more\n")):
        (tmp_path / f"f{i}.txt").write_bytes(text)
    (tmp_path / "list").write_bytes(b"f0.txt\0f1.txt\0f2.txt\0")
    for locale in ("C", "C.UTF-8"):
        mine, theirs = run_both(sockit_bin, tcp, ["--files0-from=list"], locale, cwd=tmp_path)
        assert_same(mine, theirs, locale)
        mine, theirs = run_both(sockit_bin, tcp, ["--files0-from=-", "-l"], locale,
                                cwd=tmp_path, input=b"f2.txt\0f0.txt")
        assert_same(mine, theirs, locale)


def test_files0_from_zero_length_name(sockit_bin, server, tmp_path):
    tcp, _ = server
    (tmp_path / "f.txt").write_bytes(b"x y\n")
    (tmp_path / "list").write_bytes(b"f.txt\0\0f.txt\0")
    mine, theirs = run_both(sockit_bin, tcp, ["--files0-from=list"], "C", cwd=tmp_path)
    assert_same(mine, theirs)


def test_files0_from_with_operands_and_version(run, server):
    tcp, _ = server
    rc, out, err = run.run("wc", "--files0-from=x", tcp, "y")
    assert rc == 2 and "file operands cannot be combined with --files0-from" in err, err
    rc, out, err = run.run("wc", "--version")
    assert rc == 0 and out.startswith(b"sockit wc ") and out.count(b"\n") == 1
