"""Attention: masking, the cached path, hand-computed dot attention, gradients."""

from __future__ import annotations

import pytest
import torch

from seqlab.nn.attention import ATTENTIONS, AdditiveAttention, DotAttention, GeneralAttention, make_attention

B, S, HQ, HK, HV, A = 3, 5, 4, 6, 7, 8


def _attention(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "dot":
        return make_attention("dot", HK, HK)
    return make_attention(kind, HQ, HK, attn_size=A if kind == "additive" else None)


def _inputs(kind: str, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(1)
    query = torch.randn(B, HK if kind == "dot" else HQ, generator=g, dtype=dtype)
    keys = torch.randn(B, S, HK, generator=g, dtype=dtype)
    values = torch.randn(B, S, HV, generator=g, dtype=dtype)
    lengths = torch.tensor([5, 3, 1])
    mask = torch.arange(S) < lengths.unsqueeze(1)  # (B, S), True at real tokens
    return query, keys, values, mask


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_weights_are_a_distribution_over_real_positions(kind):
    query, keys, values, mask = _inputs(kind)
    context, weights = _attention(kind)(query, keys, values, mask)
    assert context.shape == (B, HV) and weights.shape == (B, S)
    assert torch.all(weights[~mask] == 0)
    assert torch.all(weights[mask] > 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(B))
    torch.testing.assert_close(context, torch.einsum("bs,bsv->bv", weights, values))


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_padding_content_does_not_matter(kind):
    query, keys, values, mask = _inputs(kind)
    attention = _attention(kind)
    context, weights = attention(query, keys, values, mask)
    noise = 100 * torch.randn(B, S, 1)
    context2, weights2 = attention(query, keys + noise * ~mask[..., None], values + noise * ~mask[..., None], mask)
    torch.testing.assert_close(context2, context)
    torch.testing.assert_close(weights2, weights)


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_cached_keys_give_the_same_result(kind):
    query, keys, values, mask = _inputs(kind)
    attention = _attention(kind)
    cache = attention.precompute(keys)
    assert cache.shape[:2] == (B, S)
    fresh = attention(query, keys, values, mask)
    cached = attention(query, keys, values, mask, cache=cache)
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)


def test_dot_attention_by_hand():
    query = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [5.0, 5.0]]])
    values = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]])
    mask = torch.tensor([[True, True, True, False]])
    context, weights = DotAttention()(query, keys, values, mask)
    # scores q·k = 1, 0, 2 (and 5, masked)
    e = torch.tensor([1.0, 0.0, 2.0]).exp()
    expected = torch.cat([e / e.sum(), torch.zeros(1)])
    torch.testing.assert_close(weights[0], expected)
    torch.testing.assert_close(context[0], (expected[:3] * torch.tensor([1.0, 2.0, 3.0])).sum().view(1))


def test_general_and_additive_equations_by_hand():
    query, keys, values, mask = _inputs("general")
    general = _attention("general")
    W = general.key_proj.weight  # (Hq, Hk)
    scores = torch.einsum("bq,qk,bsk->bs", query, W, keys).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(general(query, keys, values, mask)[1], scores.softmax(1))

    additive = _attention("additive")
    Wq, Uk, v = additive.query_proj.weight, additive.key_proj.weight, additive.energy.weight.squeeze(0)
    energy = torch.tanh((query @ Wq.T).unsqueeze(1) + keys @ Uk.T) @ v  # (B, S)
    expected = energy.masked_fill(~mask, float("-inf")).softmax(1)
    torch.testing.assert_close(additive(query, keys, values, mask)[1], expected)


@pytest.mark.parametrize("kind", list(ATTENTIONS))
def test_gradcheck_with_mask(kind):
    attention = _attention(kind).double()
    query, keys, values, mask = _inputs(kind, torch.float64)
    names = [name for name, _ in attention.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in attention.named_parameters()]

    def f(q, k, v, *ps):
        return torch.func.functional_call(attention, dict(zip(names, ps)), (q, k, v, mask))

    inputs = (query.requires_grad_(), keys.requires_grad_(), values.requires_grad_(), *params)
    assert torch.autograd.gradcheck(f, inputs)


def test_registry_and_factory_errors():
    assert set(ATTENTIONS) == {"additive", "dot", "general"}
    assert isinstance(make_attention("additive", 2, 3, attn_size=4), AdditiveAttention)
    assert isinstance(make_attention("general", 2, 3), GeneralAttention)
    with pytest.raises(ValueError, match="valid kinds: additive, dot, general"):
        make_attention("luong", 2, 2)
    with pytest.raises(ValueError, match="needs attn_size"):
        make_attention("additive", 2, 2)
    with pytest.raises(ValueError, match="only used by additive"):
        make_attention("general", 2, 2, attn_size=4)
    with pytest.raises(ValueError, match="query_size == key_size"):
        make_attention("dot", 2, 3)
    with pytest.raises(ValueError, match="sizes must be positive"):
        AdditiveAttention(2, 0, 4)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="sizes to match"):
        DotAttention()(torch.randn(2, 3), torch.randn(2, 4, 5), torch.randn(2, 4, 5))
    query, keys, values, mask = _inputs("general")
    attention = _attention("general")
    with pytest.raises(ValueError, match="mask"):
        attention(query, keys, values, mask[:, :2])


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_many_queries_at_once_equal_one_at_a_time(kind):
    query, keys, values, mask = _inputs(kind)
    attention = _attention(kind)
    queries = torch.stack([query, query.flip(0), 2 * query], dim=1)  # (B, T=3, Hq)
    context, weights = attention(queries, keys, values, mask)
    for t in range(3):
        c_t, w_t = attention(queries[:, t], keys, values, mask)
        torch.testing.assert_close(context[:, t], c_t)
        torch.testing.assert_close(weights[:, t], w_t)
