"""Numbers instead of eyeballing: mode coverage, a Frechet distance, class accuracy, interpolation.

Over generated samples with evaluation-classifier predictions (labels 0..K-1):

    histogram   p_k = #{pred = k} / N
    KL to uniform   KL(p || u) = sum_k p_k log(p_k K)     (0 log 0 = 0; 0 for a uniform histogram, log K for one mode)
    classes covered  #{k : p_k >= share / K}               (share = 0.1: a class counts once it gets a tenth of
                                                           its fair share, so a stray misclassification does not)
    Frechet distance  |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))  between Gaussians fitted to the
                      classifier's penultimate features (Heusel et al. 2017, with our classifier for Inception)
    label accuracy  fraction of conditional samples the classifier assigns to the requested class
    confusion       C[i, j] = #{source label i, judged label j}    (a translation's labels against its source's)
    permuted accuracy  max over one-to-one relabellings pi of sum_i C[i, pi(i)] / N: how well ONE consistent
                    permutation of the classes explains the translations (1 when every 3 becomes an 8 and so on;
                    the plain accuracy sum_i C[i, i] / N is the identity's share); the assignment problem, solved
                    exactly by scipy.optimize.linear_sum_assignment
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scratchlab.gan import classifier as clf


def label_histogram(pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K,) fractions of predictions per class; sums to 1."""
    pred = np.asarray(pred)
    if pred.size == 0:
        raise ValueError("label_histogram: no predictions")
    return np.bincount(pred, minlength=n_classes)[:n_classes] / pred.size


def confusion(true: Any, pred: Any, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts C[i, j] of samples with label i judged j."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"confusion: {true.shape[0]} labels against {pred.shape[0]} predictions")
    return np.bincount(true * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def permuted_accuracy(conf: np.ndarray) -> tuple[float, list[int]]:
    """The share of samples the best one-to-one relabelling explains, and that relabelling (pi[i] = j)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(conf, maximize=True)
    return float(conf[rows, cols].sum() / conf.sum()), [int(c) for c in cols[np.argsort(rows)]]


def kl_to_uniform(hist: np.ndarray) -> float:
    """KL(p || uniform) in nats = sum_k p_k log(p_k K), with 0 log 0 = 0."""
    p = np.asarray(hist, dtype=np.float64)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] * len(p))))


def classes_covered(hist: np.ndarray, share: float = 0.1) -> int:
    return int(np.sum(np.asarray(hist) >= share / len(hist)))


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of features (N, F), float64."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is computed as sum sqrt(eig(S1^(1/2) S2 S1^(1/2))): that matrix is symmetric PSD with the
    same eigenvalues as S1 S2, so `eigh` suffices (no complex square roots, no sqrtm iterations).
    """
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S1^(1/2)
    m = root1 @ s2 @ root1
    tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def frechet_from_features(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (N, C, H, W) -> uint8 (N, C, H, W): pixel = round((x + 1) * 127.5)."""
    return ((images.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def generate(G: torch.nn.Module, n: int, *, labels: torch.Tensor | None = None, batch_size: int = 500,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """n samples (n, C, H, W) in [-1, 1] from G in eval mode (BatchNorm uses its running statistics)."""
    was_training = G.training
    G.eval()
    ref = next(G.parameters())
    out = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        z = torch.randn(m, G.cfg.latent, generator=generator).to(ref.device)
        y = None if labels is None else labels[i:i + m].to(ref.device)
        out.append(G(z, y).cpu())
    G.train(was_training)
    return torch.cat(out)


def conditional_labels(n: int, n_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: n labels, every class as often as possible."""
    return torch.arange(n) % n_classes


def evaluate_generator(G: torch.nn.Module, model: clf.Classifier, reference: np.ndarray, *, n: int = 3000,
                       n_classes: int = 10, seed: int = 0) -> dict[str, Any]:
    """Histogram, KL, classes covered, Frechet distance to `reference` features, and label accuracy if conditional.

    `reference` is the classifier's features of the test set (from `clf.features`). Samples use a fixed seed, so
    two generators are judged on the same latent draws.
    """
    labels = conditional_labels(n, n_classes) if G.cfg.n_classes else None
    x = generate(G, n, labels=labels, generator=torch.Generator().manual_seed(seed))
    pred = clf.predict(model, x)
    hist = label_histogram(pred, n_classes)
    out: dict[str, Any] = {"kl_uniform": kl_to_uniform(hist), "classes_covered": classes_covered(hist),
                           "frechet": frechet_from_features(clf.features(model, x), reference),
                           "histogram": [round(float(h), 4) for h in hist]}
    if labels is not None:
        out["label_accuracy"] = float((pred == labels.numpy()).mean())
    return out


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """(steps + 2, latent): z0, `steps` evenly spaced points strictly between, z1 (7 steps -> 9 images)."""
    t = torch.linspace(0, 1, steps + 2, device=z0.device).unsqueeze(1)  # (steps + 2, 1)
    return (1 - t) * z0 + t * z1
