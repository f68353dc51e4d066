"""Safe, all-or-nothing extraction of downloaded tar archives (CIFAR-10, aclImdb).

Every member is checked before anything is written: absolute names and `..` are refused (the tarfile `data`
filter alone would quietly rewrite `/x` to `x`), and so is every member that is not a regular file or a folder:
symbolic and hard links, devices, fifos. Neither CIFAR-10 nor aclImdb has any, and links are how an archive
reaches outside its target (a chain of symlinks longer than PATH_MAX gets past the `data` filter of Python 3.11.7,
CVE-2025-4517). Given the SHA-256 of the official file, the archive is checked against it first. Extraction then
runs with the `data` filter (odd modes) into a temp folder renamed into place at the end: a failure leaves nothing
behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from scratchlab.data.download import sha256sum
from scratchlab.data.idx import FormatError

KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
         tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a fifo"}


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for m in members:
        name = PurePosixPath(m.name.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or re.match(r"^[A-Za-z]:", m.name):
            raise FormatError(f"{archive}: unsafe archive member refused: {m.name!r} would be written outside "
                              "the target folder; refused")
        if not (m.isfile() or m.isdir()):
            kind = KINDS.get(m.type, f"a special member (type {m.type!r})")
            link = f" to {m.linkname!r}" if m.issym() or m.islnk() else ""
            raise FormatError(f"{archive}: unsafe archive member refused: {m.name!r} is {kind}{link}; expected "
                              "only regular files and folders")


def extract_tar(archive: str | Path, dest: str | Path, sha256: str | None = None) -> Path:
    """Extract `archive` (tar, tar.gz) into `dest`, which must not exist yet; all or nothing. With `sha256`, an
    archive whose digest differs is refused before it is opened."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; not extracting {archive.name} over it")
    if sha256 is not None and (found := sha256sum(archive)) != sha256:
        raise FormatError(f"{archive}: SHA-256 is {found}, expected {sha256} (the official file's); not extracting "
                          "it (delete it to download the official one)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.partial{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            check_members(archive, tar.getmembers())
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    except tarfile.FilterError as e:
        raise FormatError(f"{archive}: cannot be extracted: unsafe archive member refused ({e})") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise FormatError(f"{archive}: cannot be extracted: corrupt or truncated archive "
                          f"({type(e).__name__}: {e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
