"""Safe, all-or-nothing extraction of downloaded tar archives (CIFAR-10, aclImdb).

Every member name is checked before anything is written: absolute names and `..` are refused (the tarfile
`data` filter alone would quietly rewrite `/x` to `x`). Extraction then runs with the `data` filter, which also
refuses links out of the target, device files and odd modes, into a temp folder renamed into place at the end:
a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from scratchlab.data.idx import FormatError


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for m in members:
        name = PurePosixPath(m.name.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or re.match(r"^[A-Za-z]:", m.name):
            raise FormatError(f"{archive}: unsafe archive member refused: {m.name!r} would be written outside "
                              "the target folder; refused")


def extract_tar(archive: str | Path, dest: str | Path) -> Path:
    """Extract `archive` (tar, tar.gz) into `dest`, which must not exist yet; all or nothing."""
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; not extracting {archive.name} over it")
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
