import os

import pytest
import torch

# Tests run on 2 cores beside each other (pytest -n 2): one thread each keeps them from fighting.
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Every test gets its own cwd and cache, so no test sees another's files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCRATCHLAB_CACHE", str(tmp_path / "cache"))
