import os
import signal

# OpenBLAS (numpy) threads must be fixed before numpy loads; on 2 shared cores, extra BLAS threads spin against
# the other test worker (a 1-second numpy training took 13 s with the default).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests run on 2 cores beside each other (pytest -n 2): one thread each keeps them from fighting.
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")

# A suite started in the background (`nohup ... &`) inherits SIGINT ignored, and so would every run it starts: the
# Ctrl-C tests (a run leaves SIG_IGN alone, on purpose) would then see nothing. Give the tests Ctrl-C back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Every test gets its own cwd and cache, so no test sees another's files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCRATCHLAB_CACHE", str(tmp_path / "cache"))
