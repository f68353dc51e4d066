"""synthdigits: seeded rendering (same seed -> identical arrays), value ranges, caching, and its honest source."""

import numpy as np
import pytest

from scratchlab.data import registry, synthdigits


def test_same_seed_identical_other_seed_different():
    a_img, a_lbl = synthdigits.generate(30, seed=3)
    b_img, b_lbl = synthdigits.generate(30, seed=3)
    c_img, _ = synthdigits.generate(30, seed=4)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lbl, b_lbl)
    assert not np.array_equal(a_img, c_img)


def test_shapes_ranges_and_balanced_labels():
    images, labels = synthdigits.generate(50, seed=0)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.bincount(labels, minlength=10).tolist() == [5] * 10
    spread = images.reshape(50, -1).astype(float).std(1)
    assert spread.min() > 10  # every image has a digit standing out from its background, none is flat
    colours = images.reshape(50, -1, 3).mean(1)
    assert colours.std(0).min() > 20  # colours vary across examples, channel by channel


def test_digit_mask_is_centred_and_label_specific():
    fonts = synthdigits.font_paths()
    masks = []
    for label in range(10):
        rng = np.random.default_rng(7)  # same draws for every label: only the glyph changes
        masks.append(synthdigits._mask(rng, label, fonts))
    rows = np.arange(32)
    for m in masks:
        assert m.min() >= 0 and m.max() <= 1
        assert abs((m.sum(1) * rows).sum() / m.sum() - 15.5) < 4  # vertically centred
        assert m[:, 12:20].sum() > 0.15 * m.sum()  # ink in the central columns, where the labelled digit sits
    flat = np.stack(masks).reshape(10, -1)
    assert len({row.tobytes() for row in flat}) == 10


def test_fonts_are_sorted_and_missing_fonts_are_an_error(monkeypatch):
    fonts = synthdigits.font_paths()
    assert fonts == sorted(fonts) and all(f.lower().endswith((".ttf", ".otf")) for f in fonts)

    def no_fc_list(*a, **k):
        raise FileNotFoundError("fc-list")

    monkeypatch.setattr(synthdigits.subprocess, "run", no_fc_list)
    monkeypatch.setattr(synthdigits, "FONT_DIRS", ["/nonexistent-fonts"])
    with pytest.raises(FileNotFoundError, match="no TrueType/OpenType fonts"):
        synthdigits.font_paths()


def test_registry_says_synthetic_and_caches(tmp_path):
    data = registry.load("synthdigits", "test", n=20)
    assert "SYNTHETIC" in data.source and "not real SVHN" in data.source
    assert registry.DATASETS["synthdigits"].offline and "SYNTHETIC" in registry.DATASETS["synthdigits"].description
    cached = list((tmp_path / "cache" / "synthdigits").glob("*.npz"))
    assert len(cached) == 1
    np.testing.assert_array_equal(data.images, synthdigits.generate(20, registry.SYNTH_SEEDS["test"])[0])
    cached[0].write_bytes(b"damaged")  # a damaged cache file is rendered again, not trusted
    again = registry.load("synthdigits", "test", n=20)
    np.testing.assert_array_equal(again.images, data.images)
    train = registry.load("synthdigits", "train", n=20)
    assert not np.array_equal(train.images, data.images)  # splits use different seeds
