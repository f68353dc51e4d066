"""download(url, dest, sha256): the only way a file enters the cache.

The transfer goes to a temp file beside `dest`; its size is checked against Content-Length and its
SHA-256 against the expected digest; only then is it renamed over `dest` (atomic). A broken or
corrupted transfer raises `DownloadError` naming the URL, the file and expected vs found, and leaves
no half-written file behind. An existing `dest` with the right digest is not fetched again.

`timeout` bounds each wait on the network, `total_timeout` the whole transfer (a server trickling a byte a
second would otherwise hold a download for days); it defaults to $SCRATCHLAB_DOWNLOAD_TIMEOUT or an hour. Temp
files `.NAME.part<PID>` left by a process that died mid-download (kill -9) are deleted by the next download.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
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


def total_timeout_default() -> float:
    value = os.environ.get("SCRATCHLAB_DOWNLOAD_TIMEOUT", "3600")
    try:
        return float(value)
    except ValueError:
        raise DownloadError(f"SCRATCHLAB_DOWNLOAD_TIMEOUT: expected seconds, found {value!r}") from None


def remove_stale_parts(dest: Path) -> None:
    """Delete `.NAME.part<PID>` temp files of `dest` whose process no longer runs."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX
        return
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.part*"):
        pid = part.name.rpartition(".part")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, OverflowError):
            part.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def download(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0, total_timeout: float | None = None,
             progress: bool = True) -> Path:
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{dest}: cannot create its folder {dest.parent} ({e.strerror}: {e.filename})") from None
    remove_stale_parts(dest)
    if dest.exists():
        found = sha256sum(dest)
        if found == sha256:
            return dest
        raise DownloadError(f"{dest}: exists but its SHA-256 is {found}, expected {sha256}; "
                            "delete it to download again")
    total_timeout = total_timeout_default() if total_timeout is None else total_timeout
    deadline = time.monotonic() + total_timeout
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    h = hashlib.sha256()
    received = 0
    try:
        try:
            response = urllib.request.urlopen(url, timeout=min(timeout, total_timeout))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: cannot be fetched ({e})") from None
        with response, open(tmp, "wb") as f:
            total = response.headers.get("Content-Length")
            total = int(total) if total is not None else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
                      leave=False) as bar:
                while True:
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{url}: not finished after {total_timeout:g} s (total timeout): "
                                            f"{received} of {total if total is not None else '?'} bytes received")
                    try:
                        block = response.read1(1 << 16)  # at most one socket read: no waiting past the deadline
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
