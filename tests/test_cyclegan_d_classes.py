"""cyclegan-d-classes: the 2-class discriminator is a real/fake softmax, and the plan runs the three games."""

import pytest
import torch
from torch.nn import functional as F

from scratchlab.experiments import get
from scratchlab.gan.cyclegan import adversary
from scratchlab.sweep.engine import build_config


def test_vanilla_adversary_is_a_two_class_softmax():
    """One logit d is the 2-class softmax over (0, d), class 1 = real: the losses are 2-class cross-entropies."""
    torch.manual_seed(0)
    d_real, d_fake, labels = torch.randn(7, 1), torch.randn(7, 1), torch.randint(10, (7,))
    two = adversary("vanilla")
    assert two.n_out == 1
    pair = lambda d: torch.cat([torch.zeros_like(d), d], 1)  # noqa: E731  logits (fake, real)
    real, fake = torch.ones(7, dtype=torch.long), torch.zeros(7, dtype=torch.long)
    want_d = F.cross_entropy(pair(d_real), real) + F.cross_entropy(pair(d_fake), fake)
    torch.testing.assert_close(two.d_loss(d_real, labels, d_fake), want_d)
    torch.testing.assert_close(two.g_loss(d_fake, labels), F.cross_entropy(pair(d_fake), real))  # non-saturating
    assert adversary("labels").n_out == 11


def test_plan_has_the_three_games_on_one_budget():
    exp = get("cyclegan-d-classes")
    plan = exp.plan(build_config("cyclegan-d-classes", {}))
    assert plan.experiment == "cyclegan-digits" and plan.seeds == 3 and list(plan.variants) == ["k+1", "2-class"]
    assert plan.base == {"steps": 400, "classifier_epochs": 4, "n_target_train": 5000, "eval_every": 200}
    plan = exp.plan(build_config("cyclegan-d-classes", {"variants": ("k+1", "k+1-exercise", "2-class")}))
    cfgs = {v: build_config("cyclegan-digits", {**plan.base, **o}) for v, o in plan.variants.items()}
    assert cfgs["k+1"].model.loss == "labels" and cfgs["k+1"].d_warmup == 400 and cfgs["k+1"].model.class_weight == 1
    assert cfgs["k+1-exercise"].d_warmup == 0 and cfgs["k+1-exercise"].model.class_weight == 0
    assert cfgs["2-class"].model.loss == "vanilla" and {c.steps for c in cfgs.values()} == {400}
    with pytest.raises(ValueError, match="unknown variants"):
        exp.plan(build_config("cyclegan-d-classes", {"variants": ("k+2",)}))
