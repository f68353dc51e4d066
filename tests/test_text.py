"""Text pipeline: cleaning, options, vocabulary rules, left padding/truncation. References: hand-written answers."""

import numpy as np
import pytest

from scratchlab.data.text import PAD, UNK, TextSettings, Vocabulary, build_vocab, clean, pad, tokenize


@pytest.mark.parametrize("raw, expected", [
    ("<b>Great</b> film, 10/10!<br />Didn't expect it.", "great film didnt expect it"),
    ("Well-made... but TOO long:(", "well made but too long"),
    ("<a href='x.html'>link</a>text", "link text"),
    ("3 stars, 2nd viewing_ok", "stars nd viewing ok"),
    ("Café crème\u2019s   mood", "café crèmes mood"),
    ("1234 !!! <br/>", ""),
])
def test_clean_known_answers(raw, expected):
    assert clean(raw) == expected


def test_stop_words_and_stemming_options():
    text = "The movies were not running well"
    assert tokenize(text) == ["the", "movies", "were", "not", "running", "well"]
    assert tokenize(text, TextSettings(stop_words=True)) == ["movies", "running"]  # sklearn's list has "not", "well"
    assert tokenize(text, TextSettings(stem=True)) == ["the", "movi", "were", "not", "run", "well"]
    assert tokenize(text, TextSettings(stop_words=True, stem=True)) == ["movi", "run"]


def test_vocabulary_min_freq_max_size_and_ids():
    tokens = [["b", "a", "c", "a"], ["a", "b", "d", "c"], ["e"]]  # a:3 b:2 c:2 d:1 e:1
    assert build_vocab(tokens, min_freq=1, max_size=100) == ["<pad>", "<unk>", "a", "b", "c", "d", "e"]
    assert build_vocab(tokens, min_freq=2, max_size=100) == ["<pad>", "<unk>", "a", "b", "c"]
    assert build_vocab(tokens, min_freq=1, max_size=4) == ["<pad>", "<unk>", "a", "b"]  # ties b/c broken a-z
    assert build_vocab(tokens, min_freq=4, max_size=100) == ["<pad>", "<unk>"]
    v = Vocabulary.fit(["b a c a", "a b d c", "e"], TextSettings(min_freq=2, length=6))
    assert (PAD, UNK) == (0, 1) and v.index == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3, "c": 4}
    assert v.ids("a d zebra c") == [2, UNK, UNK, 4]
    assert v.ids("!!! 42") == [UNK]  # no words: one <unk>, never an all-padding row


def test_left_padding_and_truncation():
    rows = [[5, 6, 7], [1, 2, 3, 4, 5, 6], []]
    np.testing.assert_array_equal(pad(rows, 4), [[0, 5, 6, 7], [3, 4, 5, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(pad(rows, 4, "post"), [[0, 5, 6, 7], [1, 2, 3, 4], [0, 0, 0, 0]])
    v = Vocabulary.fit(["x y z"], TextSettings(min_freq=1, length=400))
    out = v.encode(["x", " ".join(["y"] * 500) + " z"])
    assert out.shape == (2, 400) and out.dtype == np.int64
    assert (out[0, :399] == 0).all() and out[0, 399] == v.index["x"]
    assert out[1, -1] == v.index["z"] and (out[1, :399] == v.index["y"]).all()  # the end of a long review is kept


def test_vocabulary_saved_with_settings(tmp_path):
    settings = TextSettings(stop_words=True, stem=True, min_freq=1, max_size=50, length=7, truncate="post")
    v = Vocabulary.fit(["Running movies, moving pictures"], settings)
    w = Vocabulary.load(v.save(tmp_path / "vocab.json"))
    assert w.settings == settings and w.words == v.words
    np.testing.assert_array_equal(w.encode(["movies running"]), v.encode(["movies running"]))


def test_bad_settings_and_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="max_size: expected >= 2"):
        TextSettings(max_size=1)
    with pytest.raises(ValueError, match="truncate: expected 'pre' or 'post'"):
        TextSettings(truncate="middle")
    (tmp_path / "v.json").write_text('{"words": ["<pad>"]}')
    with pytest.raises(ValueError, match=r"v\.json: not a scratchlab vocabulary"):
        Vocabulary.load(tmp_path / "v.json")
