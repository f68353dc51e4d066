"""2-D Gaussian mixtures with known modes, and mode collapse measured on them as VEEGAN and PacGAN measure it.

    ring  8 modes at (cos 2 pi k / 8, sin 2 pi k / 8), std 0.01        (VEEGAN Table 1, PacGAN Table 1)
    grid  25 modes at {-4, -2, 0, 2, 4}^2, std 0.05

every mode equally likely, isotropic. Over N generated samples x_i (N = 2,500 in both papers):

    nearest mode   m(x) = argmin_k |x - mu_k|
    high quality   |x - mu_m(x)| < 3 std: the sample counts for mode m(x) (others count for none)
    counts         c_k = #{high-quality x with m(x) = k}
    modes          #{k : c_k >= min_count}; min_count = 1 is PacGAN's released code (MetricLogger: a mode with any
                   high-quality sample is covered); `modes_20` counts the modes with at least 20
    high_quality   sum_k c_k / N
    reverse_kl     KL(q || p) = sum_k q_k log(q_k K), q_k = c_k / sum_j c_j the model's mode histogram and p the
                   data's (uniform); 0 log 0 = 0. With no high-quality sample at all q is undefined: log K, the
                   value of a generator collapsed on one mode, is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Mixture:
    name: str
    means: np.ndarray  # (K, 2)
    std: float

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 2) float32 points: a uniformly chosen mode plus N(0, std^2 I)."""
        k = torch.randint(len(self.means), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return torch.as_tensor(self.means, dtype=torch.float32)[k] + noise


def ring(n_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> Mixture:
    angle = 2 * np.pi * np.arange(n_modes) / n_modes
    return Mixture("ring", radius * np.stack([np.cos(angle), np.sin(angle)], 1), std)


def grid(values: tuple[float, ...] = (-4, -2, 0, 2, 4), std: float = 0.05) -> Mixture:
    return Mixture("grid", np.array([(a, b) for a in values for b in values], dtype=np.float64), std)


MIXTURES = {"ring": ring, "grid": grid}


def mode_counts(points: np.ndarray, mixture: Mixture, radius: float = 3.0) -> np.ndarray:
    """(K,) high-quality samples per mode: those within `radius` std of their nearest mode."""
    x = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    d = np.linalg.norm(x[:, None, :] - mixture.means[None], axis=2)  # (N, K)
    nearest, dist = d.argmin(1), d.min(1)
    good = dist < radius * mixture.std
    return np.bincount(nearest[good], minlength=len(mixture.means))


def reverse_kl(counts: np.ndarray) -> float:
    """KL(q || uniform) of the mode histogram q = counts / sum(counts); log K when every count is 0."""
    c = np.asarray(counts, dtype=np.float64)
    if c.sum() == 0:
        return math.log(len(c))
    q = c / c.sum()
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] * len(q))))


def judge(points: np.ndarray, mixture: Mixture, min_count: int = 1) -> dict[str, float | int | list[int]]:
    """The papers' numbers for N samples (N, 2): modes, modes_20, high_quality, reverse_kl and the counts."""
    c = mode_counts(points, mixture)
    n = len(np.asarray(points).reshape(-1, 2))
    return {"modes": int(np.sum(c >= min_count)), "modes_20": int(np.sum(c >= 20)),
            "high_quality": float(c.sum() / n), "reverse_kl": reverse_kl(c), "counts": c.tolist()}
