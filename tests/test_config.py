from dataclasses import dataclass, field
from typing import Literal

import pytest

from scratchlab.run.config import ConfigError, apply_overrides, from_dict, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    name: Literal["sgd", "adam"] = "adam"


@dataclass
class Cfg:
    steps: int = 10
    model: str = "lstm"
    lengths: tuple[int, ...] = (5, 10)
    clip: float | None = None
    bidirectional: bool = False
    optim: Optim = field(default_factory=Optim)


def test_overrides_parse_by_field_type():
    cfg = apply_overrides(Cfg(), ["steps=20", "optim.lr=0.5", "lengths=5,10,50", "clip=none",
                                  "bidirectional=true", "optim.name=sgd"])
    assert cfg == Cfg(steps=20, lengths=(5, 10, 50), clip=None, bidirectional=True, optim=Optim(0.5, "sgd"))
    assert apply_overrides(Cfg(), ["clip=2.5"]).clip == 2.5
    assert Cfg().steps == 10, "defaults must not be mutated"


@pytest.mark.parametrize("override, fragment", [
    ("stpes=3", "unknown key 'stpes'"),
    ("optim.momentum=0.9", "unknown key 'momentum'"),
    ("steps=ten", "expected int, got 'ten'"),
    ("bidirectional=maybe", "expected a bool"),
    ("optim.name=rmsprop", "expected one of ['sgd', 'adam']"),
    ("optim=3", "is a section"),
    ("steps", "expected key=value"),
])
def test_bad_overrides_name_the_problem(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        apply_overrides(Cfg(), [override])


def test_round_trip_through_dict():
    cfg = apply_overrides(Cfg(), ["lengths=1,2,3", "optim.lr=0.1"])
    assert from_dict(Cfg, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown config keys"):
        from_dict(Cfg, {**to_dict(cfg), "extra": 1})
