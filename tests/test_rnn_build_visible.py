"""The compiled kernels are built when the first layer is made, not inside the first training step (where the
message and the compile time would land inside a progress bar: issue 18)."""

from __future__ import annotations

import pytest

from scratchlab import rnn
from scratchlab.rnn import _cext


@pytest.mark.parametrize("layer", [rnn.RNN, rnn.LSTM, rnn.GRU])
def test_making_a_layer_builds_the_kernels_first(monkeypatch, layer):
    built = []
    monkeypatch.setattr(_cext, "_state", {})
    monkeypatch.delenv("SCRATCHLAB_NO_CEXT", raising=False)
    monkeypatch.setattr(_cext, "build", lambda: built.append(1) or "ops")
    layer(3, 4)
    assert built == [1] and _cext.ops() == "ops"
    layer(3, 4)
    assert built == [1], "built once per process"


def test_the_reference_path_and_other_devices_build_nothing(monkeypatch):
    monkeypatch.setattr(_cext, "_state", {})
    monkeypatch.setattr(_cext, "build", lambda: pytest.fail("nothing to build for impl='reference' or meta"))
    rnn.LSTM(3, 4, impl="reference")
    rnn.GRU(3, 4, device="meta")
