"""An interpolated Kneser-Ney trigram model in NumPy: the count-based baseline of word-lm.

Chen & Goodman (1998), "interpolated Kneser-Ney", one discount per order. With c the counts of the training
stream, N1+(. v w) the number of distinct words seen before the bigram (v, w), and D_n = n1 / (n1 + 2 n2) from the
numbers n1, n2 of n-grams of that order seen once and twice (counts at the top order, continuation counts below):

    P3(w | u v) = max(c(u v w) - D3, 0) / c(u v .)  +  D3 N1+(u v .) / c(u v .)  P2(w | v)        (c(u v .) > 0)
    P2(w | v)   = max(N1+(. v w) - D2, 0) / N1+(. v .)  +  D2 N1+(v .) / N1+(. v .)  P1(w)       (N1+(. v .) > 0)
    P1(w)       = max(N1+(. w) - D1, 0) / N1+(. .)  +  D1 N1+(w: N1+(. w) > 0) / N1+(. .)  / V
                  (the continuation unigram, with the mass taken off it spread uniformly over the V words)

An unseen context falls back to the order below. Each level gives away, as D times its number of types, exactly the
mass its discounts take, so every P sums to 1 over the vocabulary (tests/test_word_lm.py checks it, and one
probability by hand). Words are integer ids 0..V-1; the n-grams are int64 keys (u V + v) V + w, counted with
np.unique and looked up with np.searchsorted, so counting a million words takes about a second.
"""

from __future__ import annotations

import numpy as np


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 else 0.5  # no singletons (a tiny corpus): any D in (0, 1) keeps P summing to 1


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[k] where keys[k] == query (keys sorted), 0 where the query is not a key."""
    at = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    found = keys[at] == query if len(keys) else np.zeros(len(query), bool)
    return np.where(found, values[at] if len(keys) else 0, 0)


class KneserNeyTrigram:
    """Fit on a stream of word ids; `prob(u, v, w)` (arrays) and `perplexity(ids)`. `discounts`: (D1, D2, D3),
    each in (0, 1]; None estimates them from the counts."""

    def __init__(self, ids: np.ndarray, vocab: int, discounts: tuple[float, float, float] | None = None):
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) < 3:
            raise ValueError(f"a trigram model needs at least 3 training words, got {len(ids)}")
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"word ids must lie in 0..{vocab - 1}, found {ids.min()}..{ids.max()}")
        V = self.V = vocab
        tri = (ids[:-2] * V + ids[1:-1]) * V + ids[2:]
        self.tri, tri_count = np.unique(tri, return_counts=True)
        self.tri_count = tri_count.astype(np.float64)
        self.ctx, inv = np.unique(self.tri // V, return_inverse=True)  # contexts (u, v) as u V + v
        self.ctx_count = np.bincount(inv, weights=self.tri_count)  # c(u v .)
        self.ctx_types = np.bincount(inv).astype(np.float64)  # N1+(u v .)
        # middle order: continuation counts N1+(. v w) = distinct u before (v, w)
        self.bi, bi_cont = np.unique(self.tri % (V * V), return_counts=True)
        self.bi_cont = bi_cont.astype(np.float64)
        self.mid, inv2 = np.unique(self.bi // V, return_inverse=True)
        self.mid_count = np.bincount(inv2, weights=self.bi_cont)  # N1+(. v .)
        self.mid_types = np.bincount(inv2).astype(np.float64)  # N1+(v .) among the continuation bigrams
        # lowest order: N1+(. w) = distinct v before w, over the bigram types
        self.uni_cont = np.bincount(self.bi % V, minlength=V).astype(np.float64)
        self.uni_total = self.uni_cont.sum()
        self.D = discounts or (_discount(self.uni_cont[self.uni_cont > 0]), _discount(bi_cont), _discount(tri_count))
        if not all(0 < d <= 1 for d in self.D):
            raise ValueError(f"discounts must lie in (0, 1], got {self.D}")

    def prob(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(w | u v) for arrays of ids (broadcast together)."""
        u, v, w = (np.asarray(a, dtype=np.int64) for a in np.broadcast_arrays(u, v, w))
        V, (d1, d2, d3) = self.V, self.D
        p1 = np.maximum(self.uni_cont[w] - d1, 0) / self.uni_total \
            + d1 * (self.uni_cont > 0).sum() / self.uni_total / V
        n_v = _lookup(self.mid, self.mid_count, v)
        types_v = _lookup(self.mid, self.mid_types, v)
        cont_vw = _lookup(self.bi, self.bi_cont, v * V + w)
        seen_v = n_v > 0
        p2 = np.where(seen_v, (np.maximum(cont_vw - d2, 0) + d2 * types_v * p1) / np.where(seen_v, n_v, 1), p1)
        c_uv = _lookup(self.ctx, self.ctx_count, u * V + v)
        types_uv = _lookup(self.ctx, self.ctx_types, u * V + v)
        c_uvw = _lookup(self.tri, self.tri_count, (u * V + v) * V + w)
        seen_uv = c_uv > 0
        return np.where(seen_uv, (np.maximum(c_uvw - d3, 0) + d3 * types_uv * p2) / np.where(seen_uv, c_uv, 1), p2)

    def perplexity(self, ids: np.ndarray, context: np.ndarray | None = None) -> float:
        """exp(mean -log P(w_t | w_{t-2} w_{t-1})) over every word of `ids`; `context`: the two words before
        (else the first two words are context only, not scored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if context is not None:
            ids = np.concatenate([np.asarray(context, dtype=np.int64)[-2:], ids])
        p = self.prob(ids[:-2], ids[1:-1], ids[2:])
        return float(np.exp(-np.log(p).mean()))
