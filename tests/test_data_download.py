"""download(): SHA-256 checked, temp file then rename; every failure is a clear error and leaves no file.
Served by a loopback HTTP server (tests/datafiles.py): nothing leaves the machine."""

import pytest

from datafiles import serve, sha256
from scratchlab.data.download import DownloadError, download

BODY = bytes(range(256)) * 400  # 102,400 bytes: several read blocks


def no_leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_file(tmp_path):
    with serve({"/f.bin": BODY}) as url:
        path = download(f"{url}/f.bin", tmp_path / "d" / "f.bin", sha256(BODY), progress=False)
    assert path.read_bytes() == BODY
    assert no_leftovers(tmp_path / "d") == ["f.bin"]
    # already there with the right digest: not fetched again (the server is gone now)
    assert download(f"{url}/f.bin", path, sha256(BODY), progress=False) == path


def test_truncated_transfer(tmp_path):
    with serve({"/f.bin": (BODY[:5000], len(BODY))}) as url:  # Content-Length promises more than is sent
        with pytest.raises(DownloadError, match=r"(transfer ended after 5000 of 102400 bytes|broke off)"):
            download(f"{url}/f.bin", tmp_path / "d" / "f.bin", sha256(BODY), progress=False)
    assert no_leftovers(tmp_path / "d") == []


def test_checksum_mismatch(tmp_path):
    corrupted = BODY[:100] + b"X" + BODY[101:]
    with serve({"/f.bin": corrupted}) as url:
        with pytest.raises(DownloadError, match=f"SHA-256 mismatch for f.bin: expected {sha256(BODY)}, "
                                                f"got {sha256(corrupted)}"):
            download(f"{url}/f.bin", tmp_path / "d" / "f.bin", sha256(BODY), progress=False)
    assert no_leftovers(tmp_path / "d") == []


def test_not_found(tmp_path):
    with serve({}) as url:
        with pytest.raises(DownloadError, match=r"f.bin: cannot be fetched \(HTTP Error 404"):
            download(f"{url}/f.bin", tmp_path / "d" / "f.bin", sha256(BODY), progress=False)
    assert no_leftovers(tmp_path / "d") == []


def test_existing_file_with_wrong_digest_is_refused(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"old")
    with pytest.raises(DownloadError, match=r"exists but its SHA-256 is .*delete it to download again"):
        download("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", sha256(BODY), progress=False)
