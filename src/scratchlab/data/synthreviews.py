"""Synthetic movie reviews from word lists: a seeded stand-in corpus for tests and `--quick` runs. Not IMDB.

A review is a few sentences of neutral words ("the plot of this film ...") with sentiment words mixed in:
more from its own label's list than from the other's, so the label is decided by which kind of word is in
the majority, wherever the words fall. A model that ignores the words scores 50%; one that only finds a single
sentiment word is fooled by the minority words. Noise the cleaner must remove comes too: `<br />` tags,
ratings like "7/10", punctuation and capitals.

    >>> reviews(4, seed=0).texts[0][:60]   # doctest: +SKIP
    'The ending with this actor was superb. <br /><br />A scene ...'
"""

from __future__ import annotations

import numpy as np

from scratchlab.data.imdb import CLASSES, TextSet

POSITIVE = ["wonderful", "brilliant", "superb", "moving", "delightful", "masterful", "gripping", "charming",
            "excellent", "touching", "hilarious", "stunning", "beautiful", "clever", "memorable", "fresh"]
NEGATIVE = ["dreadful", "boring", "awful", "tedious", "clumsy", "pointless", "dull", "terrible", "lifeless",
            "predictable", "wooden", "messy", "bland", "forgettable", "annoying", "weak"]
NEUTRAL = ["the", "film", "plot", "actor", "scene", "camera", "story", "director", "music", "ending", "character",
           "script", "and", "was", "with", "a", "this", "of", "it", "movie", "cast", "dialogue", "in", "some",
           "second", "half", "lead", "role", "sequel", "studio", "screen", "while", "seemed", "felt", "quite"]


def _sentence(rng: np.random.Generator, sentiment: list[str]) -> str:
    words = list(rng.choice(NEUTRAL, size=rng.integers(4, 9)))
    for w in sentiment:
        words.insert(int(rng.integers(0, len(words) + 1)), w)
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", "!", "...", ","])


def review(rng: np.random.Generator, label: int) -> str:
    """One review: 2-5 sentiment words of the label's kind, fewer (0 to majority-1) of the other kind."""
    own, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
    n_own = int(rng.integers(2, 6))
    words = list(rng.choice(own, size=n_own)) + list(rng.choice(other, size=int(rng.integers(0, n_own))))
    rng.shuffle(words)
    n_sentences = int(rng.integers(2, 5))
    parts = [_sentence(rng, list(chunk)) for chunk in np.array_split(np.array(words, dtype=object), n_sentences)]
    if rng.random() < 0.5:
        parts.insert(int(rng.integers(0, len(parts) + 1)), f"{rng.integers(1, 11)}/10.")
    return (" <br /><br />" if rng.random() < 0.3 else " ").join(parts)


def reviews(n: int, seed: int = 0) -> TextSet:
    """`n` reviews, half positive, in a seeded random order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    return TextSet([review(rng, int(y)) for y in labels], labels, CLASSES,
                   f"synthetic reviews generated from word lists (seed {seed}; not IMDB)")


def corpus(n_train: int, n_test: int, seed: int = 0) -> dict[str, TextSet]:
    """{"train", "test"}: independent draws (different seeds), ready for the `imdb` writers."""
    return {"train": reviews(n_train, seed), "test": reviews(n_test, seed + 1_000_003)}
