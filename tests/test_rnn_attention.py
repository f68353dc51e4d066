"""Attention over hidden states against independent references: explicit loops, torch's scaled_dot_product_attention,
and finite differences (gradcheck in float64)."""

import math

import pytest
import torch

from scratchlab.rnn import AttentionHead, attend

N, L, H = 4, 7, 5


def example(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(N, L, H, dtype=dtype, generator=g)
    last = torch.randn(N, H, dtype=dtype, generator=g)
    pad = torch.tensor([0, 3, 6, 1])  # leading padding per row (left-padded), row 2 keeps one real step
    mask = torch.arange(L).expand(N, L) < pad[:, None]
    return outputs, last, mask


def loop_reference(outputs, last, mask):
    """Scores, softmax and the weighted sum written out one element at a time."""
    context = torch.zeros(N, H, dtype=outputs.dtype)
    weights = torch.zeros(N, L, dtype=outputs.dtype)
    for n in range(N):
        real = [t for t in range(L) if not mask[n, t]]
        scores = {t: sum(float(outputs[n, t, k] * last[n, k]) for k in range(H)) for t in real}
        top = max(scores.values())
        z = sum(math.exp(s - top) for s in scores.values())
        for t in real:
            weights[n, t] = math.exp(scores[t] - top) / z
            context[n] += weights[n, t] * outputs[n, t]
    return context, weights


def test_attend_matches_explicit_loops():
    outputs, last, mask = example()
    context, weights = attend(outputs, last, mask)
    ref_context, ref_weights = loop_reference(outputs, last, mask)
    torch.testing.assert_close(weights, ref_weights, atol=1e-12, rtol=0)
    torch.testing.assert_close(context, ref_context, atol=1e-12, rtol=0)


def test_attend_matches_scaled_dot_product_attention():
    outputs, last, mask = example(torch.float32)
    context, _ = attend(outputs, last, mask)
    # sdpa's bool mask means "takes part", the opposite of ours; scale=1 for a plain dot product
    ref = torch.nn.functional.scaled_dot_product_attention(
        last.unsqueeze(1), outputs, outputs, attn_mask=~mask.unsqueeze(1), scale=1.0).squeeze(1)
    torch.testing.assert_close(context, ref, atol=1e-5, rtol=0)


def test_masked_positions_get_exactly_zero_weight_and_rows_sum_to_one():
    outputs, last, mask = example()
    outputs = outputs * 50  # large scores: padding must still get exactly 0, not a tiny number
    _, weights = attend(outputs, last, mask)
    assert (weights[mask] == 0).all()
    assert (weights[~mask] >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(N, dtype=weights.dtype), atol=1e-12, rtol=0)
    assert weights[2, -1] == 1  # a single real step takes all the weight
    _, unmasked = attend(outputs, last)
    assert (unmasked > 0).any(dim=1).all() and unmasked.shape == (N, L)


def test_attend_gradcheck():
    outputs, last, mask = example()
    outputs.requires_grad_(), last.requires_grad_()
    assert torch.autograd.gradcheck(lambda o, q: attend(o, q, mask), (outputs, last))


def test_head_gradcheck_and_logits():
    torch.manual_seed(0)
    head = AttentionHead(H, 3, dropout=0.0).double()
    outputs, _, mask = example()
    outputs.requires_grad_()
    # default query = the last step's state, so gradients flow into outputs[:, -1] through both roles
    assert torch.autograd.gradcheck(lambda o: head(o, mask=mask)[0], (outputs,))
    logits, weights = head(outputs, mask=mask)
    context, ref_weights = loop_reference(outputs.detach(), outputs.detach()[:, -1], mask)
    x = torch.cat([outputs.detach()[:, -1], context], dim=1)
    torch.testing.assert_close(logits, x @ head.linear.weight.T + head.linear.bias, atol=1e-12, rtol=0)
    torch.testing.assert_close(weights, ref_weights, atol=1e-12, rtol=0)


def test_head_dropout_only_in_training():
    head = AttentionHead(H, 3, dropout=1.0)
    outputs, last, mask = example(torch.float32)
    # p = 1 drops the whole [last; context] vector: only the bias is left
    torch.testing.assert_close(head.train()(outputs, last, mask)[0], head.linear.bias.expand(N, 3))
    assert not torch.allclose(head.eval()(outputs, last, mask)[0], head.linear.bias.expand(N, 3))


def test_attend_errors():
    outputs, last, mask = example()
    with pytest.raises(ValueError, match="all padding"):
        attend(outputs, last, torch.ones(N, L, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected a bool mask of shape \[4, 7\], got torch.int64 \[4, 7\]"):
        attend(outputs, last, mask.long())
    with pytest.raises(ValueError, match=r"last \(N, H\), got outputs \[4, 7, 5\] and last \[4, 6\]"):
        attend(outputs, torch.randn(N, H + 1, dtype=torch.float64))
