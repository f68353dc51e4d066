"""Inputs that made no sense or broke a command (issue 11): one-word and wordless texts given to `predict`, config
values out of their field's range, and the compiled extension's build folder shared between checkouts. References:
the model's own outputs on the rows the text pipeline produces, and the exact messages a user should read."""

import re

import numpy as np
import pytest
import torch

from scratchlab.cli import main
from scratchlab.data.text import UNK
from scratchlab.experiments.imdb import leave_one_out
from scratchlab.rnn.classifiers import build_classifier

# ---------------------------------------------------------------- predict on one word, or none (defect 4)


def p_positive(model: torch.nn.Module, row: list[int]) -> float:
    with torch.no_grad():
        return torch.sigmoid(model(torch.tensor([row]))[0]).item()


@pytest.mark.parametrize("name", ["lstm-attention", "lstm", "bag"])
def test_leave_one_out_of_the_only_word_compares_with_the_empty_review(name):
    """Removing a review's only word leaves the row the pipeline makes of a review with no words: [<pad>.., <unk>].
    Before, that row was all padding and attention refused it ("a row of the mask is all padding")."""
    torch.manual_seed(0)
    model = build_classifier(name, 12, 5, embed_dim=6, hidden_size=8, dropout=0.0).eval()
    delta = leave_one_out(model, np.array([0, 0, 0, 0, 7]))
    expected = p_positive(model, [0, 0, 0, 0, 7]) - p_positive(model, [0, 0, 0, 0, UNK])
    assert delta[4] == pytest.approx(expected, abs=1e-6) and (delta[:4] == 0).all()
    # with more than one word, each removal still re-pads on the left
    delta = leave_one_out(model, np.array([0, 0, 0, 9, 7]))
    assert delta[3] == pytest.approx(p_positive(model, [0, 0, 0, 9, 7]) - p_positive(model, [0, 0, 0, 0, 7]), abs=1e-6)
    assert (leave_one_out(model, np.zeros(5, dtype=np.int64)) == 0).all()  # no word: nothing moved anything


def test_predict_one_word_and_texts_without_words(capsys):
    assert main(["run", "imdb", "--quick", "--out", "r", "--no-progress", "--set", "synthetic_train=200",
                 "--set", "synthetic_test=40", "--set", "epochs=1"]) == 0
    capsys.readouterr()
    assert main(["predict", "r", "film"]) == 0  # "film" is in every synthetic review's vocabulary
    out = capsys.readouterr().out
    assert re.search(r"^(positive|negative) \(probability (0\.\d{3}|1\.000); model lstm-attention\)$", out, re.M)
    assert "most-attended words: film (1.00)\n" in out
    assert re.search(r"removing each in turn\): film \([+-]\d\.\d\d\)\n", out)
    assert main(["predict", "r", "zzzunknownword"]) == 0  # one word, not in the vocabulary
    out = capsys.readouterr().out
    assert "most-attended words: none (no word of the text is in the vocabulary)" in out
    assert "1 word(s) not in the vocabulary were read as <unk>" in out
    for text in ("", "!!!", "10/10"):
        assert main(["predict", "r", text]) == 1
        assert f"no words to classify in {text!r} after cleaning (letters only)" in capsys.readouterr().err


# ---------------------------------------------------------------- config values out of range (defect 15)


@pytest.mark.parametrize("name, override, message", [
    ("palindrome", "steps=0", "--set steps=0: expected an int >= 1, got 0"),
    ("palindrome", "steps=-5", "--set steps=-5: expected an int >= 1, got -5"),
    ("palindrome", "eval_every=-1", "--set eval_every=-1: expected an int >= 0, got -1"),
    ("palindrome", "batch=0", "--set batch=0: expected an int >= 1, got 0"),
    ("palindrome", "length=1", "--set length=1: expected an int >= 2, got 1"),
    ("palindrome", "lr=0", "--set lr=0: expected a float > 0, got 0.0"),
    ("palindrome", "lr=-1e-3", "--set lr=-1e-3: expected a float > 0, got -0.001"),
    ("palindrome", "lr=nan", "--set lr=nan: expected a float > 0, got nan"),
    ("palindrome", "lr=inf", "--set lr=inf: expected a float > 0, got inf"),
    ("cyclegan-digits", "lr_decay=1.5", "--set lr_decay=1.5: expected a float in [0, 1], got 1.5"),
    ("mlp-numpy", "hidden=0", "--set hidden=0: expected an int >= 1, got 0 (item 0)"),
    ("mlp-numpy", "hidden=128,0", "--set hidden=128,0: expected an int >= 1, got 0 (item 1)"),
    ("mlp-numpy", "dropout=1", "--set dropout=1: expected a float in [0, 1), got 1.0"),
    ("mlp-numpy", "val_fraction=0", "--set val_fraction=0: expected a float in (0, 1), got 0.0"),
    ("imdb", "batch_size=0", "--set batch_size=0: expected an int >= 1, got 0"),
    ("imdb", "weight_decay=-0.1", "--set weight_decay=-0.1: expected a float >= 0, got -0.1"),
    ("binary-addition", "train_bits=63", "--set train_bits=63: expected an int in 1..62, got 63"),
    ("gan", "d_steps=0", "--set d_steps=0: expected an int >= 1, got 0"),
    ("gan", "ema=1", "--set ema=1: expected a float in [0, 1), got 1.0"),
    ("cyclegan-digits", "model.lr=0", "--set model.lr=0: expected a float > 0, got 0.0"),
])
def test_out_of_range_overrides_are_one_line_errors(name, override, message):
    from scratchlab.run.config import ConfigError
    from scratchlab.runner import build_config

    with pytest.raises(ConfigError) as info:
        build_config(name, [override])
    assert str(info.value) == message


def test_in_range_overrides_and_none_pass():
    from scratchlab.runner import build_config

    assert build_config("gan", ["d_steps=none", "eval_every=0", "ema=0.99"]).d_steps is None
    assert build_config("mlp-numpy", ["hidden=1,2", "dropout=0"]).hidden == (1, 2)
    assert build_config("palindrome", ["clip=0", "length=2"]).clip == 0.0  # clip <= 0: no clipping, by design


def test_cli_refuses_a_bad_value_before_making_the_run_directory(capsys, tmp_path):
    assert main(["run", "palindrome", "--quick", "--out", "bad", "--set", "batch=0"]) == 2  # a usage error
    assert "--set batch=0: expected an int >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("key, value, message", [
    ("batch", 0, "config batch=0: expected an int >= 1, got 0"),
    ("batch", "64", "config batch=64: expected an int, got '64'"),
    ("batch", True, "config batch=true: expected an int, got True"),
    ("lr", -1.0, "config lr=-1.0: expected a float > 0, got -1.0"),
    ("model", "transformer", "config model=transformer: expected one of ['rnn', 'lstm', 'gru'], got 'transformer'"),
])
def test_a_saved_config_goes_through_the_same_checks(key, value, message):
    """What `--resume`, `predict` and `sample` read back from config.json (edited by hand, or by an older version)."""
    from scratchlab.experiments.palindrome import PalindromeConfig
    from scratchlab.run.config import ConfigError, from_dict, to_dict

    saved = {**to_dict(PalindromeConfig()), key: value}
    with pytest.raises(ConfigError) as info:
        from_dict(PalindromeConfig, saved)
    assert str(info.value) == message
    assert from_dict(PalindromeConfig, {**saved, key: to_dict(PalindromeConfig())[key]}) == PalindromeConfig()


def test_every_experiment_default_and_quick_config_is_in_range():
    from scratchlab import experiments
    from scratchlab.runner import build_config

    for name in experiments.load_all():
        for quick in (False, True):
            build_config(name, (), quick)  # raises ConfigError on any field out of range


# ---------------------------------------------------------------- the compiled extension's build folder (defect 20)


def sources(folder, lstm: bytes = b"// lstm\n", header: bytes = b"// packed\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lstm.cpp").write_bytes(lstm)
    (folder / "packed.h").write_bytes(header)
    (folder / "notes.txt").write_text("not compiled")
    return folder


def test_build_key_follows_the_sources_the_flags_and_the_folder(tmp_path):
    from scratchlab.rnn._cext import build_key

    a = sources(tmp_path / "a")
    key = build_key(a, ["-O3"], ["-fopenmp"])
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert build_key(a, ["-O3"], ["-fopenmp"]) == key  # same sources and flags: same build
    (a / "notes.txt").write_text("edited")
    assert build_key(a, ["-O3"], ["-fopenmp"]) == key  # not a source
    different = {
        "a source's bytes": build_key(sources(tmp_path / "b", lstm=b"// lstm, edited\n"), ["-O3"], ["-fopenmp"]),
        "the header": build_key(sources(tmp_path / "c", header=b"// packed, edited\n"), ["-O3"], ["-fopenmp"]),
        "compile flags": build_key(a, ["-O2"], ["-fopenmp"]),
        "link flags": build_key(a, ["-O3"], []),
        "flags moved between compile and link": build_key(a, ["-O3", "-fopenmp"], []),
        "another checkout of the same sources": build_key(sources(tmp_path / "copy"), ["-O3"], ["-fopenmp"]),
    }
    assert len(set(different.values()) | {key}) == len(different) + 1, different


def test_build_loads_from_the_keyed_folder_and_says_when_it_compiles(tmp_path, monkeypatch, capsys):
    from torch.utils import cpp_extension

    from scratchlab.rnn import _cext

    calls = []
    monkeypatch.setattr(cpp_extension, "load", lambda name, srcs, **kw: calls.append((name, kw["build_directory"])))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    key = _cext.build_key()
    _cext.build()
    folder = tmp_path / "cache" / f"scratchlab_rnn_{key}"
    assert calls == [(f"scratchlab_rnn_{key}", str(folder))]
    said = capsys.readouterr().err
    assert said == "building scratchlab's recurrent kernels once (about a minute; `make setup` does it ahead)...\n"
    (folder / f"scratchlab_rnn_{key}.so").write_bytes(b"")  # built: found in the cache, nothing to say
    _cext.build()
    assert len(calls) == 2 and capsys.readouterr().err == ""
