"""The interface has one source: each command's option table. Its --help,
the options sections of docs/cli.md and the man page are made from it, and
this test fails when a document was not regenerated (scripts/gen-docs)."""

import os
import subprocess

from conftest import REPO


def test_documents_match_the_option_tables(run):
    r = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts", "gen-docs"),
                        "--check", run.bin], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_help_lists_the_table_and_only_it(run):
    code, out, err = run.run("help", "--words", "connect")
    words = {l.split()[0] for l in out.decode().splitlines()}
    assert {"-4", "-6", "-z", "--proxy", "--wait", "--pin", "--help"} <= words
    assert "--self-signed" not in words   # a server's option, not connect's
    code, out, err = run.run("connect", "--help")
    text = out.decode()
    for w in words:
        assert w in text, w
    code, out, err = run.run("help", "--help")
    assert code == 0 and b"Usage: sockit help" in out


def test_generated_blocks_are_where_the_markers_say(run):
    with open(os.path.join(REPO, "docs", "cli.md")) as f:
        md = f.read()
    block = md.split("<!-- options connect:")[1].split("<!-- end options connect -->")[0]
    assert "| `--proxy URL` |" in block and "| `-z, --zero-io` |" in block
