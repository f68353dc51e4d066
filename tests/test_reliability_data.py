"""The data layer under hostile and careless input (issue 11). Each case states what the reader must answer: the
exact error (file, field, expected vs found) or the exact data. Fixtures are written in the official formats
(tests/datafiles.py); downloads come from a loopback server."""

import gzip
import tracemalloc

import pytest

from datafiles import write
from scratchlab.data.idx import FormatError, read_idx

# ---------------------------------------------------------------- 12: the IDX reader streams and counts exactly


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """Header (1, 28, 28), then 100 MiB of zeros (100 KB gzipped): refused having read 785 bytes of data."""
    header = bytes([0, 0, 0x08, 3]) + (1).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    bomb = write(tmp_path / "bomb-idx3-ubyte.gz", gzip.compress(header + bytes(100 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError, match=r"bomb-idx3-ubyte.gz: dimensions \(1, 28, 28\) of uint8 need 784 data "
                                              r"bytes, found more \(trailing bytes\)"):
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"  # the whole stream would be 100 MiB (200 MiB before)


def test_dimensions_whose_product_overflows_int64(tmp_path):
    path = write(tmp_path / "huge-idx4-ubyte", bytes([0, 0, 0x08, 4]) + (2**16).to_bytes(4, "big") * 4 + b"\0" * 10)
    with pytest.raises(FormatError, match=r"huge-idx4-ubyte: dimensions \(65536, 65536, 65536, 65536\) of uint8 need "
                                          r"18446744073709551616 data bytes, found 10 \(truncated\)"):
        read_idx(path)
