"""Test helpers for data: fixture files in the official formats, and a loopback HTTP server.

`serve(routes)` starts http.server on 127.0.0.1 (port 0: the OS picks a free one) in a thread. Each route maps a
path to (body, declared_length) or (body, declared_length, interval): declaring more bytes than the body sends a
truncated transfer (the server closes the connection early); an interval sends the body one byte per `interval`
seconds (a trickling server); a path not in `routes` answers 404.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scratchlab.data.cifar import CIFAR10_CLASSES, pickle_batch


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[bytes, int, float]] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path not in self.routes:
            self.send_error(404, "no such file")
            return
        body, length, interval = self.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.close_connection = True
        chunks = [body[i:i + 1] for i in range(len(body))] if interval else [body]
        try:
            for chunk in chunks:
                time.sleep(interval)
                self.wfile.write(chunk)
                self.wfile.flush()
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):  # keep test output quiet
        pass


@contextmanager
def serve(routes: dict[str, bytes | tuple[bytes, int] | tuple[bytes, int, float]]):
    """Yield the base URL (http://127.0.0.1:PORT) of a server for `routes`; stopped on exit."""
    full = {k: (v, len(v), 0.0) if isinstance(v, bytes) else (*v, 0.0)[:3] for k, v in routes.items()}  # interval 0
    handler = type("Handler", (_Handler,), {"routes": full})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def cifar_archive(n_per_batch: int = 4, members: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """A cifar-10-python.tar.gz in the official layout; returns its bytes and the arrays it holds per split.

    `members` replaces or adds files (name relative to the archive root) to build broken variants.
    """
    files, truth = {}, {"train": ([], []), "test": ([], [])}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = cifar_images(n_per_batch, seed=i)
        files[f"cifar-10-batches-py/{name}"] = pickle_batch(images, labels, name)
        split = "test" if name == "test_batch" else "train"
        truth[split][0].append(images)
        truth[split][1].append(labels)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": n_per_batch,
            b"num_vis": 3072}
    files["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=2)
    files.update(members or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue(), {k: (np.concatenate(v[0]), np.concatenate(v[1])) for k, v in truth.items()}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tar_of(entries: list[tuple[str, bytes | tuple[bytes, str]]]) -> bytes:
    """An uncompressed tar of (name, content): bytes for a regular file, or (type, linkname) for any other member
    (tarfile.DIRTYPE, SYMTYPE, LNKTYPE, CHRTYPE, ...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                info.type, info.linkname = content
                info.mode = 0o755
                tar.addfile(info)
    return buf.getvalue()


def symlink_chain_tar(extract_dir: Path) -> bytes:
    """CVE-2025-4517 (CPython's test_realpath_limit_attack): 16 nested symlinks whose expansion under `extract_dir`
    passes PATH_MAX, so os.path.realpath stops resolving and the `data` filter of Python <= 3.11.12 lets `escape`
    point at extract_dir's parent; the last member writes `newfile` there."""
    steps = "abcdefghijklmnop"
    component = "d" * ((os.pathconf(extract_dir.parent, "PC_PATH_MAX") - len(str(extract_dir)) - 1) // (len(steps) + 1))
    entries, path = [], ""
    for step in steps:
        entries += [(os.path.join(path, component), (tarfile.DIRTYPE, "")),
                    (os.path.join(path, step), (tarfile.SYMTYPE, component))]
        path = os.path.join(path, component)
    longlink = os.path.join(*steps, "l" * 254)
    entries += [(longlink, (tarfile.SYMTYPE, os.path.join(*[".."] * len(steps)))),
                ("escape", (tarfile.SYMTYPE, os.path.join(longlink, ".."))),
                ("escape/newfile", b"written outside the target")]
    return tar_of(entries)
