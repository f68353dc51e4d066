"""Metrics against independent references: scipy's sqrtm, the closed form for diagonal covariances, hand KL."""

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from scratchlab.gan import metrics as M


def test_frechet_matches_scipy_sqrtm_on_random_gaussians():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert M.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_frechet_closed_form_for_diagonal_covariances():
    # diagonal: d = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = (1 + 0 + 4) + (1 + 1 + 0)
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_from_samples_approaches_the_population_value():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, size=(20000, 2))
    y = rng.normal([1, 0], [2, 1], size=(20000, 2))
    assert M.frechet_from_features(x, y) == pytest.approx(1 + (1 - 2) ** 2, abs=0.06)


def test_histogram_kl_and_classes_covered_by_hand():
    pred = np.array([0, 0, 1, 3])
    hist = M.label_histogram(pred, 4)
    assert hist.tolist() == [0.5, 0.25, 0.0, 0.25]
    # KL(p || u) = 0.5 log(0.5*4) + 0.25 log(0.25*4) + 0 + 0.25 log(0.25*4) = 0.5 log 2
    assert M.kl_to_uniform(hist) == pytest.approx(0.5 * math.log(2))
    assert M.kl_to_uniform(np.full(10, 0.1)) == pytest.approx(0)
    assert M.kl_to_uniform(np.eye(10)[3]) == pytest.approx(math.log(10))  # one mode
    assert M.classes_covered(hist) == 3
    assert M.classes_covered(np.array([0.995, 0.005] + [0.0] * 8)) == 1  # a stray sample is not a class
    with pytest.raises(ValueError, match="no predictions"):
        M.label_histogram(np.array([], dtype=int), 10)


def test_interpolation_has_both_ends_and_seven_steps_between():
    z0, z1 = torch.zeros(3), torch.tensor([9.0, 0.0, -9.0])
    path = M.interpolate(z0, z1, 7)
    assert path.shape == (9, 3)
    assert torch.equal(path[0], z0) and torch.allclose(path[-1], z1)
    assert torch.allclose(path[1], z1 / 8)  # evenly spaced


def test_to_uint8_maps_the_tanh_range_onto_pixels():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5]).view(1, 1, 1, 5)
    assert M.to_uint8(x).flatten().tolist() == [0, 64, 128, 255, 255]  # round((x + 1) * 127.5), clipped
    assert M.conditional_labels(12, 10).tolist() == list(range(10)) + [0, 1]


def test_confusion_counts_and_the_best_permutation_against_every_permutation():
    rng = np.random.default_rng(0)
    for k in (2, 3, 5):
        true = rng.integers(k, size=200)
        pred = np.where(rng.random(200) < 0.7, (3 * true + 1) % k, rng.integers(k, size=200))  # mostly a permutation
        conf = M.confusion(true, pred, k)
        assert conf.sum() == 200 and all(conf[i, j] == np.sum((true == i) & (pred == j))
                                         for i in range(k) for j in range(k))
        best = max(itertools.permutations(range(k)), key=lambda p: sum(conf[i, p[i]] for i in range(k)))
        acc, pi = M.permuted_accuracy(conf)
        assert acc == pytest.approx(sum(conf[i, best[i]] for i in range(k)) / 200)  # exhaustive enumeration
        assert sum(conf[i, pi[i]] for i in range(k)) / 200 == pytest.approx(acc) and sorted(pi) == list(range(k))
    # every 3 judged an 8 and back: plain accuracy 0, the permutation explains everything
    acc, pi = M.permuted_accuracy(M.confusion([0, 1, 2, 2], [1, 2, 0, 0], 3))
    assert acc == 1.0 and pi == [1, 2, 0]
    with pytest.raises(ValueError, match="labels against"):
        M.confusion([0, 1], [0], 2)
