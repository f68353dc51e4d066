"""Sequence classifiers for sentiment: ids (N, L) -> one logit per sequence, and attention weights where there are.

    lstm            embedding -> LSTM -> last hidden state -> dropout -> linear
    lstm-attention  embedding -> LSTM -> attention over every step (query = W * last state, padding masked) -> linear
    gru             embedding -> GRU -> last hidden state -> dropout -> linear
    mlp             the padded index matrix read as numbers -> linear -> ReLU -> dropout -> linear
    bag             embedding -> mean over the words (padding left out) -> dropout -> linear

All heads give one logit z: p(positive) = sigmoid(z), trained with binary cross-entropy
-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]. Id 0 is padding, placed before the sequence (left padding,
as `scratchlab.data.text` writes it), so the last step of a forward recurrence is the sequence's last word.
Bidirectional encoders concatenate the forward direction's last step with the backward direction's state at the
first real word (its last step), not at position 0, which would come after reading all the padding.

With `packed=True` the recurrent encoders read each review's real length instead: the words are gathered into a
PackedSequence (lengths = the non-padding ids; `packing`) so that the encoder never steps over padding, and the
outputs put back at the words' positions (zeros on the padding), so that the heads, the mask and the attention
weights are those of the padded model. A review then gives the same logit whatever its padding. One index each way
rather than pack_padded_sequence + pad_packed_sequence: the latter copies step by step, and autograd then copies
the whole gradient once per step (0.9 s of a 1.8 s step at batch 64, length 400).

The `mlp` is the exercises' baseline: a word id's value carries no meaning (id 812 is not "more" than id 811),
so it should stay near chance; the `bag` model is the strong bar without recurrence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from scratchlab.rnn import GRU, LSTM
from scratchlab.rnn.attention import AttentionHead

PAD = 0


def packing(ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where each word of the left-padded ids (N, L) goes in a PackedSequence: flat positions (N_words,) into
    ids.view(-1) in the packed order (step t of every review still running at t, longest reviews first), and the
    PackedSequence's batch_sizes (T,) (CPU), sorted_indices and unsorted_indices (N,). Review r's step t is its word
    at column L - len_r + t."""
    N, L = ids.shape  # noqa: N806
    lengths = (ids != PAD).sum(1)                                         # (N,), >= 1 (the text pipeline's promise)
    sorted_lengths, sorted_indices = lengths.sort(descending=True, stable=True)
    steps = torch.arange(int(sorted_lengths[0]), device=ids.device).unsqueeze(1)   # (T, 1)
    running = sorted_lengths.unsqueeze(0) > steps                         # (T, N): review b still running at t
    columns = (L - sorted_lengths).unsqueeze(0) + steps                   # (T, N): its word's column at step t
    flat = (sorted_indices.unsqueeze(0) * L + columns)[running]          # row-major: step by step, as packed
    return flat, running.sum(1).cpu(), sorted_indices, sorted_indices.argsort()


class RecurrentClassifier(nn.Module):
    """Embedding + LSTM/GRU encoder + (last state | attention) head.

    Inputs: ids (N, L) int64, left padded with 0.
    Outputs: logits (N,), weights (N, L) over the steps (None without attention; zero on padding).
    `rnn_type` swaps in another class with torch.nn.LSTM's API (the benchmark compares against torch.nn.LSTM);
    `packed` runs the encoder on the real lengths (module docstring).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden_size: int = 128, *, cell: str = "lstm",
                 attention: bool = False, bidirectional: bool = False, num_layers: int = 1, dropout: float = 0.5,
                 rnn_type: type | None = None, packed: bool = False):
        super().__init__()
        self.packed = packed
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell: expected 'lstm' or 'gru', got {cell!r}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        rnn_type = rnn_type or (LSTM if cell == "lstm" else GRU)
        self.rnn = rnn_type(embed_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.hidden_size, self.directions = hidden_size, 2 if bidirectional else 1
        features = hidden_size * self.directions
        if attention:
            # Luong's "general" score o_t . (W q): with q = o_L itself the last step scores |q|^2 >= q . o_t for
            # every step whose state is no longer than q (Cauchy-Schwarz), so the weights pile onto the last word.
            self.query = nn.Linear(features, features, bias=False)
            self.attention = AttentionHead(features, 1, dropout)
        else:
            self.attention = None
            self.dropout = nn.Dropout(dropout)
            self.out = nn.Linear(features, 1)

    def last_state(self, outputs: Tensor, ids: Tensor) -> Tensor:
        """(N, D*H): forward direction at the last step; backward direction at the first non-padding step."""
        last = outputs[:, -1]  # (N, D*H)
        if self.directions == 1:
            return last
        first = (ids != PAD).int().argmax(dim=1)  # (N,) index of the first real word
        backward = outputs[torch.arange(len(ids), device=ids.device), first, self.hidden_size:]  # (N, H)
        return torch.cat([last[:, :self.hidden_size], backward], dim=-1)

    def encode(self, ids: Tensor) -> Tensor:
        """The encoder's outputs (N, L, D*H) at the ids' positions: over the whole padded rows, or (packed) over each
        review's words only, zeros on the padding."""
        if not self.packed:
            return self.rnn(self.embedding(ids))[0]
        flat, batch_sizes, sorted_indices, unsorted_indices = packing(ids)
        words = self.embedding(ids.reshape(-1)[flat])                     # (N_words, E): the words only
        out = self.rnn(PackedSequence(words, batch_sizes, sorted_indices, unsorted_indices))[0].data  # (N_words, D*H)
        N, L = ids.shape  # noqa: N806
        return out.new_zeros(N * L, out.shape[1]).index_copy(0, flat, out).view(N, L, -1)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor | None]:
        outputs = self.encode(ids)  # (N, L, D*H)
        last = self.last_state(outputs, ids)
        if self.attention is None:
            return self.out(self.dropout(last)).squeeze(-1), None
        # The head reads [W q; context]; W q carries what q does to the linear layer after it.
        logits, weights = self.attention(outputs, self.query(last), ids == PAD)  # mask True on padding; (N, 1), (N, L)
        return logits.squeeze(-1), weights


class MLPClassifier(nn.Module):
    """Two layers on the raw index matrix: ids / vocab_size (N, L) -> hidden -> ReLU -> dropout -> 1.

    Scaling by the vocabulary size keeps the inputs in [0, 1) so the first layer starts unsaturated; it is
    an affine change, so the model can represent exactly what it could on the raw ids.
    """

    def __init__(self, vocab_size: int, length: int, hidden_size: int = 128, dropout: float = 0.5):
        super().__init__()
        self.scale = 1.0 / vocab_size
        self.net = nn.Sequential(nn.Linear(length, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_size, 1))

    def forward(self, ids: Tensor) -> tuple[Tensor, None]:
        return self.net(ids.float() * self.scale).squeeze(-1), None


class BagClassifier(nn.Module):
    """Mean of the word embeddings, padding excluded: sum_t m_t e_t / sum_t m_t with m_t = [id_t != 0]."""

    def __init__(self, vocab_size: int, embed_dim: int = 128, dropout: float = 0.5):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(embed_dim, 1)

    def forward(self, ids: Tensor) -> tuple[Tensor, None]:
        mask = (ids != PAD).unsqueeze(-1).to(self.embedding.weight.dtype)  # (N, L, 1)
        mean = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (N, E)
        return self.out(self.dropout(mean)).squeeze(-1), None


MODELS = ("lstm", "lstm-attention", "gru", "mlp", "bag")


def build_classifier(name: str, vocab_size: int, length: int, *, embed_dim: int = 128, hidden_size: int = 128,
                     num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.5,
                     rnn_type: type | None = None, packed: bool = False) -> nn.Module:
    """One of MODELS by name; every model maps ids (N, L) to (logits (N,), weights (N, L) or None). `packed`
    applies to the recurrent models (the others read every position by design)."""
    recurrent = {"lstm": ("lstm", False), "lstm-attention": ("lstm", True), "gru": ("gru", False)}
    if name in recurrent:
        cell, attention = recurrent[name]
        return RecurrentClassifier(vocab_size, embed_dim, hidden_size, cell=cell, attention=attention,
                                   bidirectional=bidirectional, num_layers=num_layers, dropout=dropout,
                                   rnn_type=rnn_type, packed=packed)
    if name == "mlp":
        return MLPClassifier(vocab_size, length, hidden_size, dropout)
    if name == "bag":
        return BagClassifier(vocab_size, embed_dim, dropout)
    raise ValueError(f"model: expected one of {list(MODELS)}, got {name!r}")
