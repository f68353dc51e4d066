"""A small reader of R's serialization format (XDR, versions 2 and 3) and of R's lazy-load databases.

An installed R package keeps its data sets in `data/Rdata.rdb` and `data/Rdata.rdx` (a "lazy-load database"):

    Rdata.rdx   gzip (or zlib after a 4-byte length) of one serialized list:
                  variables:  name -> c(offset, length)   where the object sits in Rdata.rdb
                  references, compressed
    Rdata.rdb   at each offset: a 4-byte big-endian length of the uncompressed data, then (compressed = 1) a zlib
                stream of the serialized object; type 2 / 3 put one byte ('2' bzip2, 'X' xz, '0' stored) after the
                length

A serialized object ("X\\n" then version, writer and minimal R versions, and for version 3 the native encoding) is
a tree of items, each opening with an int of flags: its SEXP type (low 8 bits), whether attributes (bit 9) and a
tag (bit 10) follow. Only what data sets use is read here: NULL, symbols, pairlists, character, logical, integer,
double and generic vectors, with attributes (names, class, row.names) and references to earlier symbols. Anything
else is a FormatError naming the type, not a guess. R Internals, section 1.8 ("Serialization formats"), is the
reference.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchlab.data.idx import FormatError

# SEXP types (R Internals 1.1.1) and the pseudo-types of serialization
NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP = 255, 254, 253, 242, 241
NA_INTEGER = -(2**31)


@dataclass
class RVector:
    """An R vector: its values (a Python list; None is NA) and its attributes (names, class, ...)."""

    values: list[Any]
    attributes: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source, self.refs = data, 0, source, []

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"{self.source}: serialized data ends at byte {len(self.data)}, needed {n} more at "
                              f"{self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # a long vector: two more ints, upper and lower 32 bits
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (NILVALUE_SXP, NILSXP, GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP):
            return None
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYMSXP:
            name = self.item()  # a CHARSXP item
            self.refs.append(name)
            return name
        if kind == LISTSXP:  # a pairlist, read as {tag: value} (untagged entries get their position)
            out: dict[str, Any] = {}
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else str(len(out))
                out[tag] = self.item()
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
                if kind in (NILVALUE_SXP, NILSXP):
                    return out
                if kind != LISTSXP:
                    raise FormatError(f"{self.source}: a pairlist ends in SEXP type {kind}, not NULL")
        if kind == CHARSXP:
            n = self.int()
            return None if n == -1 else self.take(n).decode("utf-8", errors="surrogateescape")
        if kind in (LGLSXP, INTSXP):
            n = self.length()
            values = [None if v == NA_INTEGER else v for v in struct.unpack(f">{n}i", self.take(4 * n))]
            values = [None if v is None else bool(v) for v in values] if kind == LGLSXP else values
        elif kind == REALSXP:
            n = self.length()
            values = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif kind in (STRSXP, VECSXP):
            values = [self.item() for _ in range(self.length())]
        else:
            raise FormatError(f"{self.source}: SEXP type {kind} at byte {self.pos - 4} is not read here (only data "
                              "vectors, lists, symbols and pairlists are)")
        attributes = self.item() if has_attr else {}
        return RVector(values, attributes or {})


def unserialize(data: bytes, source: str = "R data") -> Any:
    """One object from R's XDR serialization (`saveRDS(compress = FALSE)`, `serialize(x, NULL)`)."""
    r = _Reader(data, source)
    if r.take(2) != b"X\n":
        raise FormatError(f"{source}: not R's XDR serialization (starts {data[:2]!r}, expected b'X\\n')")
    version = r.int()
    r.int(), r.int()  # the writer's R version, the oldest R that reads it
    if version == 3:
        r.take(r.int())  # the native encoding, e.g. "UTF-8"
    elif version != 2:
        raise FormatError(f"{source}: serialization version {version}; expected 2 or 3")
    return r.item()


def _decompress(blob: bytes, source: str) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    size = struct.unpack(">I", blob[:4])[0]
    body = blob[4:]
    if body[:1] in (b"Z", b"2", b"X", b"0") and body[1:3] not in (b"\x78\x9c", b"\x78\xda", b"\x78\x01"):
        kind, body = body[:1], body[1:]
        out = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}[kind](body)
    else:
        try:
            out = zlib.decompress(body)
        except zlib.error as e:
            raise FormatError(f"{source}: cannot decompress ({e})") from None
    if len(out) != size:
        raise FormatError(f"{source}: {len(out)} bytes after decompressing, its header says {size}")
    return out


def lazyload(folder: str | Path, name: str = "Rdata") -> dict[str, Any]:
    """Every object of the lazy-load database `folder/name.rdb` (+ `.rdx`), by variable name."""
    folder = Path(folder)
    rdx, rdb = folder / f"{name}.rdx", folder / f"{name}.rdb"
    index = unserialize(_decompress(rdx.read_bytes(), str(rdx)), str(rdx))
    if not isinstance(index, RVector) or "variables" not in index.attributes.get("names", RVector([])).values:
        raise FormatError(f"{rdx}: not a lazy-load index (no 'variables' entry)")
    names = index.attributes["names"].values
    variables = index.values[names.index("variables")]
    data = rdb.read_bytes()
    out = {}
    for var, where in zip(variables.attributes["names"].values, variables.values, strict=True):
        offset, size = where.values
        out[var] = unserialize(_decompress(data[offset:offset + size], f"{rdb}:{var}"), f"{rdb}:{var}")
    return out
