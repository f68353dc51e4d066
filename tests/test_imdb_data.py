"""Sentiment corpora: the three layouts on good and malformed fixtures, safe extraction, checked download.

References: the fixture corpora written here (what was written must be read back), hand-made malformed files,
and archives built with tarfile; downloads come from a loopback HTTP server.
"""

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from scratchlab.cli import main
from scratchlab.data import imdb, registry, synthreviews
from scratchlab.data.archive import extract_tar
from scratchlab.data.download import DownloadError
from scratchlab.data.idx import FormatError
from scratchlab.data.text import clean


@pytest.fixture
def corpus():
    return synthreviews.corpus(12, 6, seed=3)


def _by_label(data):
    return sorted(zip(data.labels.tolist(), [" ".join(t.split()) for t in data.texts], strict=True))


@pytest.mark.parametrize("kind", ["aclimdb", "four-file", "csv"])
def test_layouts_round_trip(tmp_path, corpus, kind):
    if kind == "aclimdb":
        imdb.write_aclimdb(tmp_path, corpus)
    elif kind == "four-file":
        imdb.write_four_files(tmp_path, corpus)
    else:
        for split, data in corpus.items():
            imdb.write_csv(tmp_path / f"{split}.csv", data)
    assert imdb.layout(tmp_path)[0] == kind
    for split in imdb.SPLITS:
        data = imdb.read_corpus(tmp_path, split)
        assert _by_label(data) == _by_label(corpus[split]) and data.labels.dtype == np.int64
        assert str(tmp_path) in data.source


def test_synthetic_reviews_are_labelled_by_majority():
    data = synthreviews.reviews(200, seed=1)
    assert data.labels.sum() == 100 and "not IMDB" in data.source
    pos, neg = set(synthreviews.POSITIVE), set(synthreviews.NEGATIVE)
    for text, y in zip(data.texts, data.labels, strict=True):
        words = clean(text).split()
        n_pos, n_neg = sum(w in pos for w in words), sum(w in neg for w in words)
        assert (n_pos > n_neg) == bool(y), text
    assert synthreviews.reviews(20, seed=1).texts == synthreviews.reviews(20, seed=1).texts


def test_validation_split_is_seeded_and_disjoint():
    train = synthreviews.reviews(40, seed=0)
    tr, val = imdb.split_validation(train, 0.25, seed=7)
    assert (len(tr), len(val)) == (30, 10)
    assert sorted(tr.texts + val.texts) == sorted(train.texts)
    assert imdb.split_validation(train, 0.25, seed=7)[1].texts == val.texts
    assert imdb.split_validation(train, 0.25, seed=8)[1].texts != val.texts


def test_aclimdb_errors_name_the_file(tmp_path, corpus):
    root = imdb.write_aclimdb(tmp_path, corpus)
    bad = root / "train" / "pos" / "99_3.txt"
    bad.write_text("rated three, filed as positive")
    with pytest.raises(FormatError, match=r"99_3\.txt: rating 3 in pos/, expected 7-10"):
        imdb.read_aclimdb(root, "train")
    bad.unlink()
    (root / "train" / "neg" / "notes.txt").write_text("x")
    with pytest.raises(FormatError, match=r"notes\.txt: expected a review file named <id>_<rating>\.txt"):
        imdb.read_aclimdb(root, "train")
    (root / "train" / "neg" / "notes.txt").unlink()
    (root / "test" / "neg" / "5_2.txt").write_bytes(b"caf\xe9")
    with pytest.raises(FormatError, match=r"5_2\.txt:1: not UTF-8"):
        imdb.read_aclimdb(root, "test")


def test_four_file_errors_name_file_and_line(tmp_path, corpus):
    imdb.write_four_files(tmp_path, corpus)
    path = tmp_path / "train_neg.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["   "] + lines[2:]) + "\n")
    with pytest.raises(FormatError, match=r"train_neg\.txt:3: empty line"):
        imdb.read_corpus(tmp_path, "train")
    path.write_bytes(b"fine review\nbad \xff byte\n")
    with pytest.raises(FormatError, match=r"train_neg\.txt:2: not UTF-8"):
        imdb.read_corpus(tmp_path, "train")


@pytest.mark.parametrize("content, message", [
    ("review,label\nok,pos\n", r"bad\.csv:1: expected a header with columns text and label"),
    ("text,label\nfine,pos\nfine too,neg\nmeh,maybe\n", r"bad\.csv:4: label 'maybe'"),
    ("text,label\nfine,1\n\"two\nlines\",0,extra\n", r"bad\.csv:4: expected 2 fields, found 3"),
    ("text,label\n,1\n", r"bad\.csv:2: empty text"),
])
def test_csv_errors_name_file_and_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(FormatError, match=message):
        imdb.read_csv(tmp_path / "bad.csv")


def test_csv_accepts_label_spellings_and_extra_columns(tmp_path):
    (tmp_path / "c.csv").write_text('id,label,text\n1,positive,"Great, truly"\n2,0,Bad\n3,NEG,"multi\nline"\n')
    data = imdb.read_csv(tmp_path / "c.csv")
    assert data.texts == ["Great, truly", "Bad", "multi\nline"] and data.labels.tolist() == [1, 0, 0]


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("evil", ["../escape.txt", "aclImdb/../../escape.txt", "/tmp/abs_escape.txt"])
def test_extraction_refuses_paths_outside_target(tmp_path, evil):
    archive = _tar(tmp_path / "a.tar.gz", {"aclImdb/README": b"ok", evil: b"gotcha"})
    with pytest.raises(FormatError, match="would be written outside the target folder; refused"):
        extract_tar(archive, tmp_path / "out" / "aclImdb")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/abs_escape.txt").exists()


def test_extraction_refuses_links_out_of_target(tmp_path):
    with tarfile.open(tmp_path / "l.tar", "w") as tar:
        link = tarfile.TarInfo("aclImdb/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(FormatError, match="'aclImdb/link' is a symbolic link to '/etc/passwd'; expected only"):
        extract_tar(tmp_path / "l.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www over HTTP on 127.0.0.1 (port chosen by the OS); yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


def _official_style_archive(path: Path, corpus) -> Path:
    tree = path.parent / "tree"
    imdb.write_aclimdb(tree, corpus)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree / "aclImdb", arcname="aclImdb")
    return path


def test_fetch_downloads_checks_and_extracts(server, corpus, monkeypatch, tmp_path, capsys):
    www, url = server
    archive = _official_style_archive(www / "aclImdb_v1.tar.gz", corpus)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(imdb, "IMDB_URL", f"{url}/aclImdb_v1.tar.gz")
    monkeypatch.setattr(imdb, "IMDB_SHA256", digest)
    assert main(["data", "fetch", "imdb"]) == 0  # through the dataset registry, as a user would
    out = capsys.readouterr().out
    assert f"imdb train: {len(corpus['train'])} examples" in out and f"imdb test: {len(corpus['test'])}" in out
    cached = tmp_path / "cache" / "imdb"
    assert imdb.layout(cached) == ("aclimdb", cached / "aclImdb")
    assert _by_label(registry.load("imdb", "test")) == _by_label(corpus["test"])


def test_checksum_mismatch_keeps_no_file(server, corpus, tmp_path):
    www, url = server
    _official_style_archive(www / "aclImdb_v1.tar.gz", corpus)
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        imdb.fetch(f"{url}/aclImdb_v1.tar.gz", "0" * 64, progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert imdb.find() is None


def test_missing_corpus_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="scratchlab data fetch imdb"):
        imdb.load_split("train", allow_download=False)
    with pytest.raises(FileNotFoundError, match=r"expected aclImdb/\{train,test\}/\{pos,neg\}/"):
        imdb.read_corpus(tmp_path, "train")
