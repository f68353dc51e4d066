"""download(url, dest, sha256): the only way a file enters the cache.

The transfer goes to a temp file beside `dest`; its size is checked against Content-Length and its
SHA-256 against the expected digest; only then is it renamed over `dest` (atomic). A broken or
corrupted transfer raises `DownloadError` naming the URL, the file and expected vs found, and leaves
no half-written file behind. An existing `dest` with the right digest is not fetched again.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm


class DownloadError(RuntimeError):
    """A download failed: network error, short transfer or checksum mismatch."""


def sha256sum(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """`$SCRATCHLAB_CACHE` or ~/.cache/scratchlab."""
    return Path(os.environ.get("SCRATCHLAB_CACHE", Path.home() / ".cache" / "scratchlab"))


def download(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0, progress: bool = True) -> Path:
    dest = Path(dest)
    if dest.exists():
        found = sha256sum(dest)
        if found == sha256:
            return dest
        raise DownloadError(f"{dest}: exists but its SHA-256 is {found}, expected {sha256}; "
                            "delete it to download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    h = hashlib.sha256()
    received = 0
    try:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: cannot be fetched ({e})") from None
        with response, open(tmp, "wb") as f:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                      leave=False) as bar:
                while True:
                    try:
                        block = response.read(1 << 16)
                    except (OSError, ValueError) as e:  # connection reset, http.client.IncompleteRead
                        raise DownloadError(f"{url}: transfer broke off after {received} bytes ({e})") from None
                    if not block:
                        break
                    f.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise DownloadError(f"{url}: transfer ended after {received} of {total} bytes (Content-Length)")
        if h.hexdigest() != sha256:
            raise DownloadError(f"{url}: SHA-256 mismatch for {dest.name}: expected {sha256}, got {h.hexdigest()} "
                                f"({received} bytes); the file was not kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
