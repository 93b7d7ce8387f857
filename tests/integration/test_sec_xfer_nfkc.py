"""Issue 19, finding 6: a sender's names that compatibility folding (NFKC)
turns into "..", "." or a path with '/' or '\\' are refused by `sockit
receive` before anything is written. The sender is a raw SKXF/1 client
(test_xfer.py's hostile sender, imported); the checker's table is tested
over every code point in tests/unit/test_xfer_nfkc.c."""

import os

import pytest

from test_xfer import KIND_DIR, _refused, hostile  # noqa: F401 (hostile is a fixture)

NAME = 5  # ERROR code NAME


@pytest.mark.parametrize("entries,why", [
    # U+FE30 (NFKC "..") as a directory with a file inside, as the review did
    ([("\ufe30", 0, KIND_DIR), ("\ufe30/x", 4)], "NFKC look-alike of '.' U+FE30"),
    ([("\ufe30", 4)], "NFKC look-alike of '.' U+FE30"),
    ([(".\u2024", 4)], "NFKC look-alike of '.' U+2024"),        # "." + one dot leader
    ([("\u2025", 4)], "NFKC look-alike of '.' U+2025"),         # two dot leader
    ([("\uff0e\uff0e/evil", 4)], "NFKC look-alike of '.' U+FF0E"),
    ([("\u2100", 4)], "NFKC look-alike of '/' U+2100"),         # a/c
    ([("x\u2101y", 4)], "NFKC look-alike of '/' U+2101"),       # a/s
    ([("d", 0, KIND_DIR), ("d/\u2105", 4)], "NFKC look-alike of '/' U+2105"),  # c/o
    ([("\u2106.txt", 4)], "NFKC look-alike of '/' U+2106"),     # c/u
    ([("\uff3c", 4)], "NFKC look-alike of '\\' U+FF3C"),
])
def test_names_folding_to_dots_or_separators_are_refused(hostile, entries, why):  # noqa: F811
    raw = hostile.start()
    raw.offer(entries)
    err = _refused(hostile, NAME, why, "refused: name '")
    assert "\\u{" in err                # the name is shown escaped
    assert os.listdir(hostile.out) == []
