"""The IDX format of MNIST and Fashion-MNIST (gzip or raw).

    magic: 0x00 0x00 <type> <ndim>, then ndim big-endian uint32 sizes, then the data, big-endian.
    type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64

`read_idx` checks the magic number, the dimensions and the byte count, and says which is wrong.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np


class FormatError(ValueError):
    """A data file does not have the format it claims: names the file, the field, expected vs found."""


IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic; truncated gzip is a FormatError."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise FormatError(f"{path}: gzip stream is corrupt or truncated ({e})") from None
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    if len(data) < 4:
        raise FormatError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes of magic)")
    if data[0] != 0 or data[1] != 0:
        raise FormatError(f"{name}: magic number starts {data[0]:#04x} {data[1]:#04x}, expected 0x00 0x00 "
                          "(not an IDX file?)")
    code, ndim = data[2], data[3]
    if code not in IDX_TYPES:
        raise FormatError(f"{name}: magic number type byte {code:#04x} unknown; expected one of "
                          f"{[hex(c) for c in IDX_TYPES]}")
    if ndim == 0:
        raise FormatError(f"{name}: magic number says 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(f"{name}: header needs {header} bytes for {ndim} dimensions, file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        raise FormatError(f"{name}: dimensions {shape} of {dtype.name} need {expected} data bytes, found {found} "
                          f"({'truncated' if found < expected else 'trailing bytes'})")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as IDX (gzip when the name ends in .gz); used to make fixtures in the official format."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    arr = np.asarray(array)
    code = codes[arr.dtype.newbyteorder("=")]
    body = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    body += arr.astype(np.dtype(IDX_TYPES[code])).tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(body) if compress else body)
    return path
