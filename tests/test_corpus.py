"""Language-model corpora: R's serialization read against bytes written by hand from the format's spec, Jane
Austen from Debian's package (when installed), tiny-shakespeare through the checked download (a loopback server),
text_file errors, and contiguous splits."""

import gzip
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from datafiles import serve
from scratchlab.data import corpus, rdata, registry
from scratchlab.data.download import DownloadError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def _i(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _char(s: str | None) -> bytes:
    if s is None:
        return _i(9, -1)  # NA_STRING
    b = s.encode()
    return _i(9 | (1 << 15), len(b)) + b  # CHARSXP, UTF-8 flag in the levels


def _names_attr(*names: str) -> bytes:
    # pairlist (LISTSXP with a tag): tag = SYMSXP "names", value = STRSXP of names, then NULL
    return (_i(2 | (1 << 10)) + _i(1) + _char("names") + _i(16, len(names)) + b"".join(map(_char, names))
            + _i(254))


def _header(version: int = 3) -> bytes:
    return b"X\n" + _i(version, 0x040201, 0x030500) + (_i(5) + b"UTF-8" if version == 3 else b"")


def test_unserialize_named_list_by_hand():
    # list(a = c("x", NA), b = 1:3, c = 2.5, d = TRUE)
    body = (_i(19 | (1 << 9), 4) + _i(16, 2) + _char("x") + _char(None) + _i(13, 3) + _i(1, 2, 3)
            + _i(14, 1) + struct.pack(">d", 2.5) + _i(10, 1) + _i(1) + _names_attr("a", "b", "c", "d"))
    for version in (2, 3):
        obj = rdata.unserialize(_header(version) + body)
        assert obj.attributes["names"].values == ["a", "b", "c", "d"]
        assert [v.values for v in obj.values] == [["x", None], [1, 2, 3], [2.5], [True]]


def test_unserialize_rejects_what_it_does_not_read():
    with pytest.raises(rdata.FormatError, match="not R's XDR"):
        rdata.unserialize(b"A\n" + _i(3))
    with pytest.raises(rdata.FormatError, match="SEXP type 3 .* not read here"):
        rdata.unserialize(_header() + _i(3))  # a closure
    with pytest.raises(rdata.FormatError, match="ends at byte"):
        rdata.unserialize(_header() + _i(16, 2) + _char("x"))


def test_lazyload_by_hand(tmp_path):
    """An .rdb of two zlib-compressed objects and the gzip .rdx index that points at them."""
    objects = {"one": _header() + _i(16, 1) + _char("first line"), "two": _header() + _i(13, 1) + _i(7)}
    rdb, where = b"", {}
    for name, data in objects.items():
        blob = struct.pack(">I", len(data)) + zlib.compress(data)
        where[name] = (len(rdb), len(blob))
        rdb += blob
    variables = (_i(19 | (1 << 9), 2) + b"".join(_i(13, 2) + _i(*where[n]) for n in objects)
                 + _names_attr(*objects))
    index = _header() + _i(19 | (1 << 9), 1) + variables + _names_attr("variables")
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(index))
    found = rdata.lazyload(tmp_path)
    assert found["one"].values == ["first line"] and found["two"].values == [7]


@pytest.mark.skipif(not Path(corpus.AUSTEN_SYSTEM).is_dir(), reason="r-cran-janeaustenr is not installed")
def test_austen_from_debian():
    c = corpus.load_corpus("austen")
    assert c.text.startswith("SENSE AND SENSIBILITY\n")
    assert "It is a truth universally acknowledged, that a single man in possession\nof a good fortune" in c.text
    assert c.text.rstrip().endswith("Finis")  # Persuasion, the last novel, ends so
    assert len(c) == 4_025_032 and "r-cran-janeaustenr" in c.source
    assert registry.DATASETS["austen"].offline


@pytest.fixture
def shakespeare_in_cache(tmp_path):
    """The shared copy of tiny-shakespeare put where a finished download would have left it."""
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not here")
    target = tmp_path / "cache" / "tinyshakespeare" / "input.txt"
    target.parent.mkdir(parents=True)
    shutil.copy(SHARED, target)
    return target


def test_tinyshakespeare_from_cache(shakespeare_in_cache):
    c = corpus.load_corpus("tinyshakespeare", allow_download=False)
    assert len(c.text.encode()) == 1_115_394 and c.text.startswith("First Citizen:")
    test = registry.load("tinyshakespeare", "test")
    assert len(test) == len(c) - corpus.split_blocks(len(c))[2][0] and "test block" in test.source


def test_tinyshakespeare_download_is_checked(monkeypatch, tmp_path):
    if not SHARED.exists():
        pytest.skip(f"{SHARED} is not here")
    body = SHARED.read_bytes()
    with serve({"/input.txt": body, "/bad.txt": body[:-1] + b"!"}) as url:
        monkeypatch.setattr(corpus, "TINY_SHAKESPEARE", corpus.Remote(
            "input.txt", f"{url}/bad.txt", corpus.TINY_SHAKESPEARE.sha256))
        with pytest.raises(DownloadError, match="SHA-256 mismatch"):
            corpus.load_corpus("tinyshakespeare")
        monkeypatch.setattr(corpus, "TINY_SHAKESPEARE", corpus.Remote(
            "input.txt", f"{url}/input.txt", corpus.TINY_SHAKESPEARE.sha256))
        c = corpus.load_corpus("tinyshakespeare")
    assert "downloaded" in c.source and len(c.text.encode()) == 1_115_394


def test_text_file_errors(tmp_path):
    (tmp_path / "ok.txt").write_text("héllo\nworld\n", encoding="utf-8")
    assert corpus.load_corpus("austen", text_file=str(tmp_path / "ok.txt")).text == "héllo\nworld\n"
    with pytest.raises(FileNotFoundError, match=r"text_file=.*nope.txt: no such file"):
        corpus.load_corpus("austen", text_file=str(tmp_path / "nope.txt"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text \(byte 3"):
        corpus.load_corpus("austen", text_file=str(tmp_path / "latin1.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="the file is empty"):
        corpus.load_corpus("austen", text_file=str(tmp_path / "empty.txt"))


def test_split_blocks_are_contiguous_and_cover_everything():
    blocks = corpus.split_blocks(1001)
    assert blocks[0][0] == 0 and blocks[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    assert [b - a for a, b in blocks] == [901, 50, 50]
    with pytest.raises(ValueError, match="too few"):
        corpus.split_blocks(10)
