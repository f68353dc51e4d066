"""cyclegan-d-classes: the MNIST <-> SVHN exercise's question, what changes when the discriminators only tell real
from fake instead of classifying the 10 digits plus "fake", answered over seeds.

    k+1           cyclegan-digits as it is: (K+1)-class D_X, D_Y, 400 D-only warm-up steps, class_weight 1
    k+1-exercise  the exercise's (K+1)-class game exactly: no warm-up, class_weight 0
    2-class       model.loss=vanilla: one logit d per image, p(real) = sigmoid(d), which is a 2-class softmax over
                  the logits (0, d); G's only adversarial signal is "look real", nothing asks it to keep the digit
                  except the cycle term

Every variant runs the same number of CycleGAN steps (`base.steps`; the k+1 variant's warm-up steps are
discriminator-only and come on top). The budget is cut from cyclegan-digits' (2500 steps, 6-epoch judges, 10,000
synthdigits) to 400 steps, 4-epoch judges and 5,000 synthdigits, what two variants over three seeds could have of
a shared CPU: docs/gan.md has the numbers it gave. k+1-exercise is there to run (`--set variants=...`), not measured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scratchlab.experiments import Plan, sweep_experiment
from scratchlab.experiments.cyclegan import QUICK, CycleDigitsConfig
from scratchlab.run import config as C
from scratchlab.run.config import PositiveInt

D_VARIANTS: dict[str, dict[str, Any]] = {
    "k+1": {},
    "k+1-exercise": {"model.class_weight": 0.0, "d_warmup": 0},
    "2-class": {"model.loss": "vanilla"},
}
METRICS = ("label_preservation_x2y", "label_preservation_y2x", "permuted_preservation_x2y", "permuted_preservation_y2x",
           "cycle_mse_x", "cycle_mse_y")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


@dataclass
class DClassesConfig:
    # the measured budget (docs/gan.md): 400 CycleGAN steps (cyclegan-digits: 2500), judges of 4 epochs on 5,000
    # synthdigits (cyclegan-digits: 6 epochs, 10,000), evaluations every 200 steps on 500 test images per domain
    base: CycleDigitsConfig = dataclasses.field(default_factory=lambda: CycleDigitsConfig(
        steps=400, classifier_epochs=4, n_target_train=5000, eval_every=200))
    variants: tuple[str, ...] = ("k+1", "2-class")  # a subset of D_VARIANTS (k+1-exercise: also there)
    seeds: PositiveInt = 3  # each variant over seeds seed, seed + 1, ...


@sweep_experiment("cyclegan-d-classes", DClassesConfig, help="cyclegan-digits with (K+1)-class discriminators "
                  "against 2-class (real/fake) ones over seeds: label preservation both ways, cycle error",
                  quick={**{f"base.{k}": v for k, v in QUICK.items()}, "seeds": 2}, seeds=3)
def cyclegan_d_classes(cfg: DClassesConfig) -> Plan:
    unknown = set(cfg.variants) - set(D_VARIANTS)
    if unknown:
        raise ValueError(f"cyclegan-d-classes: unknown variants {sorted(unknown)}; known: {list(D_VARIANTS)}")
    default = _flat(C.to_dict(CycleDigitsConfig()))
    base = {k: v for k, v in _flat(C.to_dict(cfg.base)).items() if v != default[k]}
    return Plan("cyclegan-digits", {v: D_VARIANTS[v] for v in cfg.variants}, seeds=cfg.seeds, base=base,
                metrics=METRICS)
