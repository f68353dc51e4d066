"""Evaluation classifiers: input normalisation, shapes, learning on real digits, the cache."""

import numpy as np
import pytest
import torch

from scratchlab.gan import classifier as C


def test_layouts_normalise_to_the_same_tensor():
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    nchw = nhwc.transpose(0, 3, 1, 2).copy()
    a, b = C.as_float_images(nhwc), C.as_float_images(torch.from_numpy(nchw))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b)
    # x = pixel / 127.5 - 1, checked on known pixels
    assert a[0, 1, 2, 5].item() == pytest.approx(nhwc[0, 2, 5, 1] / 127.5 - 1)
    gray = C.as_float_images(np.array([[[0, 255]]], dtype=np.uint8))
    assert gray.shape == (1, 1, 1, 2) and gray.flatten().tolist() == [-1.0, 1.0]
    floats = torch.rand(2, 1, 28, 28) * 2 - 1  # generator output passes through unchanged
    assert torch.equal(C.as_float_images(floats), floats)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        C.as_float_images(np.zeros((2, 5, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="arch"):
        C.build_classifier("rnn", 1, 28)


@pytest.mark.parametrize("arch,channels,size,n_features", [("mlp", 1, 28, 256), ("cnn", 1, 28, 128),
                                                           ("mlp", 3, 32, 256), ("cnn", 3, 32, 128)])
def test_shapes(arch, channels, size, n_features):
    model = C.build_classifier(arch, channels, size)
    x = np.zeros((5, size, size, channels), dtype=np.uint8)
    assert model(C.as_float_images(x)).shape == (5, 10)
    assert C.features(model, x).shape == (5, n_features) and C.features(model, x).dtype == np.float64
    logits = model.eval()(C.as_float_images(x))
    assert np.array_equal(C.predict(model, x), logits.argmax(1).numpy())


@pytest.mark.slow
def test_learns_real_digits_and_caches(monkeypatch):
    """mnist-5k (real digits, offline): an MLP on 1000 images for 6 epochs gets far above chance (10%)."""
    torch.manual_seed(123)
    model, info = C.load_or_train("mnist-5k", "mlp", seed=1, epochs=6, n_train=1000)
    after_cold = torch.rand(3)
    assert info["cached"] == "trained now" and info["test_accuracy"] >= 0.80, info
    path = C.cache_path("mnist-5k", "mlp", 1, 6, 1000)
    assert path.exists()

    from scratchlab.data import registry

    test = registry.load("mnist-5k", "test")
    called = []
    monkeypatch.setattr(C, "train_classifier", lambda *a, **k: called.append(1))
    torch.manual_seed(123)
    again, info2 = C.load_or_train("mnist-5k", "mlp", seed=1, epochs=6, n_train=1000)
    # Training runs under its own RNG, so a cold cache leaves the caller's stream where a warm one does.
    assert torch.equal(torch.rand(3), after_cold), "a cold and a warm cache must leave the caller's stream alike"
    assert not called and info2["cached"] == str(path)
    assert info2["test_accuracy"] == info["test_accuracy"]
    assert np.array_equal(C.predict(again, test.images), C.predict(model, test.images))
    assert C.evaluate(again, test.images, test.labels) == pytest.approx(info["test_accuracy"])


def test_mlp_standardises_with_the_training_statistics():
    """The MLP's first map is (x - mean) / std with the training images' mean and std (in [-1, 1] units), fixed:
    checked against numpy on the raw pixels, and on a float input in [-1, 1] (what a generator gives)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 3, size=40)
    model, _ = C.train_classifier(images, labels, "mlp", epochs=1, batch_size=20, n_classes=3)
    scaled = images.astype(np.float64) / 127.5 - 1
    mean, std = scaled.mean(), scaled.std(ddof=1)
    layer = next(m for m in model.modules() if isinstance(m, C.Standardize))
    assert layer.mean.item() == pytest.approx(mean, rel=1e-5) and layer.std.item() == pytest.approx(std, rel=1e-5)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    expected = (x.double().flatten(1) - mean) / std
    torch.testing.assert_close(layer(x.flatten(1)).double(), expected, rtol=1e-5, atol=1e-5)
    assert not any(p is layer.mean or p is layer.std for p in model.parameters()), "not trained"
    assert {"body.1.mean", "body.1.std"} <= set(model.state_dict()), "saved with the model (the cache keeps them)"
