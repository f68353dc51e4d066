"""gan-stacked: stacking, the per-channel mode code, the uniform floor, and a quick run end to end."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from scratchlab.cli import main
from scratchlab.experiments import gan_stacked as S
from scratchlab.experiments.gan import load_generator
from scratchlab.gan.nets import DCGenerator, Generator


class Oracle(nn.Module):
    """A 'classifier' that reads the digit d from an image filled with the value d / 10 - 0.5 (exactly right)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        v = x.flatten(1).mean(1, keepdim=True)  # (N, 1)
        return -((v - (torch.arange(10) / 10 - 0.5)) ** 2)  # (N, 10): nearest level wins


def filled(triples) -> torch.Tensor:
    t = torch.tensor(triples, dtype=torch.float32) / 10 - 0.5  # (N, 3)
    return t[:, :, None, None].expand(-1, -1, 28, 28).contiguous()


def test_every_triple_is_its_own_mode():
    triples = list(itertools.product(range(10), repeat=3))  # all 1000, in order
    assert S.modes_of(Oracle(), filled(triples)).tolist() == list(range(1000))
    r = S.judge(Oracle(), filled(triples))
    assert r["modes"] == 1000 and r["kl"] == pytest.approx(0.0, abs=1e-12)
    collapsed = S.judge(Oracle(), filled([(7, 0, 3)] * 50 + [(1, 1, 1)] * 50))
    assert collapsed["modes"] == 2 and collapsed["kl"] == pytest.approx(np.log(500))  # half on each of 2 of 1000


def test_stack_puts_one_training_digit_in_each_channel():
    digits = np.stack([np.full((28, 28), 25 * k, dtype=np.uint8) for k in range(10)])  # digit k: value 25 k
    x, idx = S.stack(digits, 40, torch.Generator().manual_seed(0))
    assert x.shape == (40, 3, 28, 28) and idx.shape == (40, 3)
    want = torch.tensor(25.0 * idx.numpy()) / 127.5 - 1  # uint8 -> [-1, 1]
    torch.testing.assert_close(x[:, :, 5, 5].double(), want, atol=1e-6, rtol=0)


def test_uniform_floor_is_the_small_sample_kl():
    # E[KL] of n uniform draws over k cells ~ (k - 1) / (2 n): 0.0192 for the papers' 26,000 over 1000
    assert S.uniform_floor(26000) == pytest.approx(999 / 52000, abs=0.003)
    assert S.uniform_floor(10**6, k=10) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_quick_run(tmp_path, arch):
    assert main(["run", "gan-stacked", "--quick", "--no-progress", "--out", "s", "--set", "pack=2",
                 "--set", f"arch={arch}"]) == 0
    s = json.loads((tmp_path / "s/summary.json").read_text())
    G = load_generator(tmp_path / "s")  # the trained generator, rebuilt from the checkpoint's net config
    assert isinstance(G, DCGenerator if arch == "dcgan" else Generator)
    assert G(G.sample_latent(2)).shape == (2, 3, 28, 28)
    assert 1 <= s["modes"] <= 600 and s["kl"] >= 0 and s["n_eval"] == 600 and s["g_updates"] == 10
    assert s["kl_floor"] > 0
    # 600 real triples: a uniform draw shows 1000 (1 - e^-0.6) = 451 modes on average; the quick judge (1 epoch,
    # ~70% right per digit) piles some onto neighbours, but real data stays within twice the uniform floor's KL,
    # far from the 10-round generator
    assert s["modes"] < s["real_modes"] <= 600 and s["real_kl"] < 2 * s["kl_floor"]
    assert (tmp_path / "s/samples_end.png").exists() and (tmp_path / "s/data.png").exists()
