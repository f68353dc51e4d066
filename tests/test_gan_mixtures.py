"""The 2-D mixtures and the VEEGAN/PacGAN mode metrics on samples whose answers are worked out by hand."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

from scratchlab.cli import main
from scratchlab.gan import mixtures as X


def test_the_papers_mixtures():
    ring, grid = X.ring(), X.grid()
    assert ring.means.shape == (8, 2) and ring.std == 0.01
    np.testing.assert_allclose(np.linalg.norm(ring.means, axis=1), 1.0)
    np.testing.assert_allclose(ring.means[2], [0.0, 1.0], atol=1e-12)  # 2 pi * 2 / 8 = 90 degrees
    assert grid.std == 0.05
    assert sorted(map(tuple, grid.means)) == sorted(itertools.product([-4, -2, 0, 2, 4], repeat=2))
    x = grid.sample(20000, generator=torch.Generator().manual_seed(0)).double().numpy()
    nearest = np.array([grid.means[np.argmin(np.linalg.norm(grid.means - p, axis=1))] for p in x[:2000]])
    assert abs((x[:2000] - nearest).std() - 0.05) < 0.003  # the noise around each mode has std 0.05
    c = X.mode_counts(x, grid)
    assert c.sum() > 0.98 * 20000 and c.min() > 650  # every mode about 800 of 20,000; 3 std keeps 98.9% in 2-D


def test_counts_on_constructed_samples():
    grid = X.grid()  # std 0.05: a sample is high quality within 0.15 of its nearest mode
    pts = np.array([[0.0, 0.0], [0.1, 0.1],  # mode (0, 0): |(.1, .1)| = 0.141 < 0.15
                    [0.12, 0.1],             # 0.156 > 0.15 from (0, 0): low quality, counts for no mode
                    [4.0, -3.9],             # mode (4, -4) at 0.1
                    [1.0, 1.0],              # between four modes: low quality
                    [9.0, 9.0]])             # far outside: nearest (4, 4), low quality
    c = X.mode_counts(pts, grid)
    k00 = [tuple(m) for m in grid.means].index((0.0, 0.0))
    k4m4 = [tuple(m) for m in grid.means].index((4.0, -4.0))
    assert c[k00] == 2 and c[k4m4] == 1 and c.sum() == 3
    r = X.judge(pts, grid)
    assert r["modes"] == 2 and r["modes_20"] == 0 and r["high_quality"] == 3 / 6
    # q = (2/3, 1/3) on 2 of 25 modes: KL(q || u) = 2/3 log(2/3 * 25) + 1/3 log(1/3 * 25)
    assert r["reverse_kl"] == pytest.approx(2 / 3 * math.log(50 / 3) + 1 / 3 * math.log(25 / 3), rel=1e-12)


def test_reverse_kl_known_answers():
    assert X.reverse_kl(np.full(8, 300)) == 0.0  # uniform over the modes
    assert X.reverse_kl(np.eye(8)[3] * 2500) == pytest.approx(math.log(8))  # every sample on one mode
    assert X.reverse_kl(np.zeros(25)) == pytest.approx(math.log(25))  # nothing high quality: as one mode
    assert X.reverse_kl(np.array([1, 1, 0, 0])) == pytest.approx(math.log(2))  # half the modes, evenly


def test_min_count_and_exhaustive_ring():
    ring = X.ring()
    # every one of the 2^8 subsets of covered modes, 20 samples on each covered mode (exactly at the mean)
    # and 5 on the first uncovered one (exactly 2.9 std off its mean): modes counts the subset
    for subset in itertools.product([0, 1], repeat=8):
        cov = [k for k in range(8) if subset[k]]
        pts = [ring.means[k] for k in cov for _ in range(20)]
        off = [k for k in range(8) if not subset[k]][:1]
        pts += [ring.means[k] + [0.029, 0.0] for k in off for _ in range(5)]
        pts = np.array(pts).reshape(-1, 2)
        if len(pts) == 0:
            continue
        assert X.judge(pts, ring, min_count=20)["modes"] == len(cov)
        assert X.judge(pts, ring)["modes"] == len(cov) + len(off)
        assert X.judge(pts, ring)["high_quality"] == 1.0


@pytest.mark.slow
def test_gan_modes_quick_writes_the_contract(tmp_path):
    args = ["--quick", "--no-progress", "--set", "seeds=2", "--set", "base.steps=6", "--set", "base.eval_every=3",
            "--set", "variants=vanilla,pacgan2", "--set", "base.n_eval=200"]
    assert main(["run", "gan-modes", "--out", "m", *args]) == 0
    s = json.loads((tmp_path / "m/summary.json").read_text())
    for mix in ("ring", "grid"):
        for v in ("vanilla", "pacgan2"):
            assert 0 <= s[f"{mix}.{v}.modes"] <= (8 if mix == "ring" else 25)
            assert 0 <= s[f"{mix}.{v}.high_quality"] <= 1 and s[f"{mix}.{v}.reverse_kl"] >= 0
        assert (tmp_path / f"m/samples_{mix}.png").exists()
    runs = {v["name"]: v for v in s["variants"]}
    assert runs["grid.pacgan2"]["n"] == 2 and runs["grid.pacgan2"]["overrides"]["pack"] == 2
    one = json.loads((tmp_path / "m/grid.pacgan2/seed0/summary.json").read_text())
    assert sum(one["counts"]) == round(one["high_quality"] * 200) and one["g_updates"] == 6
    assert np.load(tmp_path / "m/grid.pacgan2/seed0/samples.npy").shape == (200, 2)
