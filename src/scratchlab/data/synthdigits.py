"""synthdigits: a SYNTHETIC, offline stand-in for SVHN, rendered from the machine's TrueType fonts.

SVHN (the real data set, `scratchlab.data.svhn`) needs a download; this module draws house-number-like
digits instead, so the MNIST <-> SVHN-style experiments run on a machine without a network. It is never
presented as SVHN: its `source` text says "synthetic" in every report.

One example (32x32 RGB, uint8) is made in these steps, every choice drawn from one seeded generator:

    font    one of the system's .ttf/.otf files (`fc-list`, else /usr/share/fonts), size 18..33 px
    mask    the labelled digit centred (+-2 px jitter), a neighbouring distractor digit on the left and/or
            right with probability 0.6 each (as in SVHN's cropped house numbers), rotated by up to +-8 degrees
    colour  background: a (partly desaturated) base colour + a linear gradient + smooth low-frequency texture;
            foreground: a colour whose luminance differs from the background's by at least 60
    image   bg * (1 - mask) + fg * mask, then Gaussian blur (radius 0..1.2) and pixel noise (sigma 0..10)

Same seed, same fonts -> identical arrays. Labels are balanced (n/10 of each digit, shuffled).
`generate` renders; `load_cached` renders once and keeps an .npz in the cache directory.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
from functools import cache
from pathlib import Path

import numpy as np

from scratchlab.data.download import cache_dir

SIZE = 32
VERSION = 1  # bump when the rendering changes, so cached files are not reused
FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts"]


def font_paths() -> list[str]:
    """The machine's TrueType/OpenType fonts, sorted (so the same machine gives the same data)."""
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, timeout=30,
                             check=True).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        out = [p for d in FONT_DIRS for p in glob.glob(f"{d}/**/*", recursive=True)]
    paths = sorted({p for p in out if p.lower().endswith((".ttf", ".otf")) and os.path.isfile(p)})
    paths = [p for p in paths if _renders_digits(p)]
    if not paths:
        raise FileNotFoundError(f"synthdigits: no TrueType/OpenType fonts that draw digits found (fc-list, "
                                f"{FONT_DIRS}); install e.g. Debian's fonts-dejavu-core")
    return paths


@cache
def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _renders_digits(path: str) -> bool:
    """Symbol fonts map digits to pictures or nothing; keep fonts whose 0..9 have distinct, non-empty glyphs."""
    try:
        font = _font(path, 24)
        masks = {np.asarray(font.getmask(str(d))).tobytes() for d in range(10)}
        return len(masks) == 10 and all(font.getbbox(str(d))[2] > font.getbbox(str(d))[0] for d in range(10))
    except OSError:
        return False


def _mask(rng: np.random.Generator, label: int, fonts: list[str]) -> np.ndarray:
    """(32, 32) float in [0, 1]: the digit `label` centred, maybe with neighbours, slightly rotated."""
    from PIL import Image, ImageDraw

    font = _font(fonts[rng.integers(len(fonts))], int(rng.integers(18, 34)))
    img = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(img)
    l, t, r, b = font.getbbox(str(label))
    cx, cy = SIZE / 2 + rng.uniform(-2, 2), SIZE / 2 + rng.uniform(-2, 2)
    x0, y0 = cx - (l + r) / 2, cy - (t + b) / 2
    draw.text((x0, y0), str(label), font=font, fill=255)
    gap = rng.uniform(0, 4)
    if rng.random() < 0.6:  # left neighbour: its right edge `gap` pixels left of the digit's left edge
        d = str(rng.integers(10))
        dl, _, dr, _ = font.getbbox(d)
        draw.text((x0 + l - gap - dr, y0), d, font=font, fill=255)
    if rng.random() < 0.6:
        d = str(rng.integers(10))
        dl, _, _, _ = font.getbbox(d)
        draw.text((x0 + r + gap - dl, y0), d, font=font, fill=255)
    img = img.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR, center=(cx, cy))
    return np.asarray(img, dtype=np.float32) / 255.0


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random RGB colour, desaturated towards its grey by a random amount (street scenes are mostly dull)."""
    rgb = rng.uniform(0, 255, 3)
    grey = _luminance(rgb)
    return grey + rng.uniform(0.2, 1.0) * (rgb - grey)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    bg = _colour(rng)
    while True:  # rejection: the digit must stand out from its background, as on a house plate
        fg = _colour(rng)
        if abs(_luminance(fg) - _luminance(bg)) >= 60:
            return bg, fg


def _background(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """(32, 32, 3): base colour + linear gradient in a random direction + upsampled 4x4 texture."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None] * rng.uniform(0, 60, 3)
    coarse = rng.normal(0, 1, (4, 4, 3)) * rng.uniform(0, 20)
    # bilinear upsampling of the 4x4 grid: smooth blotches, like stains and shadows on a wall
    t = np.linspace(0, 3, SIZE)
    i = np.minimum(t.astype(int), 2)
    w = (t - i)[:, None]
    rows = coarse[i] * (1 - w[..., None]) + coarse[i + 1] * w[..., None]          # (32, 4, 3)
    texture = rows[:, i] * (1 - w[None, :, :]) + rows[:, i + 1] * w[None, :, :]  # (32, 32, 3)
    return base + ramp + texture


def render(rng: np.random.Generator, label: int, fonts: list[str]) -> np.ndarray:
    """One (32, 32, 3) uint8 example of digit `label`."""
    from PIL import Image, ImageFilter

    mask = _mask(rng, label, fonts)[..., None]
    bg, fg = _colours(rng)
    img = _background(rng, bg) * (1 - mask) + (fg + rng.normal(0, 8, 3)) * mask
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    pil = pil.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0, 1.2)))
    out = np.asarray(pil, dtype=np.float32) + rng.normal(0, rng.uniform(0, 10), (SIZE, SIZE, 3))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def generate(n: int, seed: int, fonts: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`n` examples: images uint8 (n, 32, 32, 3), labels int64 (n,), balanced over 0..9, from `seed`."""
    if n < 0:
        raise ValueError(f"synthdigits: n must be >= 0, got {n}")
    fonts = font_paths() if fonts is None else fonts
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = render(rng, int(label), fonts)
    return images, labels


def cache_path(n: int, seed: int, fonts: list[str]) -> Path:
    key = hashlib.sha256("\n".join(fonts).encode()).hexdigest()[:10]
    return cache_dir() / "synthdigits" / f"synthdigits-v{VERSION}-n{n}-seed{seed}-fonts{key}.npz"


def load_cached(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """`generate(n, seed)`, rendered once and then read back from the cache (.npz, written atomically)."""
    fonts = font_paths()
    path = cache_path(n, seed, fonts)
    if path.exists():
        try:
            with np.load(path) as f:
                images, labels = f["images"], f["labels"]
            if images.shape == (n, SIZE, SIZE, 3) and labels.shape == (n,):
                return images, labels, path
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is rendered again
    images, labels = generate(n, seed, fonts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, images=images, labels=labels)
    os.replace(tmp, path)
    return images, labels, path
