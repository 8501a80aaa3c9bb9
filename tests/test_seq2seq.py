"""The encoder-decoder: teacher forcing == stepping, search invariants, attention, reversal."""

import pytest
import torch

from seqlab.seq2seq.encoder import reverse_padded
from seqlab.seq2seq.model import ModelConfig, Seq2Seq
from seqlab.seq2seq.search import beam_search

SRC_V, TGT_V, BOS, EOS = 12, 9, 1, 2


def _model(**overrides) -> Seq2Seq:
    torch.manual_seed(0)
    settings = dict(emb_size=8, enc_hidden=6, enc_layers=2, dec_hidden=10, dropout=0.0)
    config = ModelConfig(**{**settings, **overrides})
    return Seq2Seq(SRC_V, TGT_V, config).eval()


def _batch():
    g = torch.Generator().manual_seed(3)
    src_len = torch.tensor([5, 3, 7, 1])
    src = torch.randint(4, SRC_V, (4, 7), generator=g)
    src = src.masked_fill(torch.arange(7) >= src_len.unsqueeze(1), 0)
    tgt = torch.randint(3, TGT_V, (4, 6), generator=g)
    tgt[:, 0] = BOS
    return src, src_len, tgt


CONFIGS = [
    dict(),
    dict(input_feeding=False),
    dict(attention="additive", cell="gru"),
    dict(attention="dot", enc_hidden=5, dec_hidden=10, cell="sru"),
    dict(attention="none", input_feeding=False, bidirectional=False, reverse_source=True),
    dict(cell="nested_lstm", dec_layers=2),
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_teacher_forcing_equals_step_by_step(overrides):
    model = _model(**overrides)
    src, src_len, tgt = _batch()
    logits, weights = model(src, src_len, tgt)
    state = model.encode(src, src_len)
    for t in range(tgt.shape[1]):
        step_logits, state, w = model.decoder.step(tgt[:, t], state)
        torch.testing.assert_close(logits[:, t], step_logits, atol=1e-5, rtol=1e-5)
        if weights is not None:
            torch.testing.assert_close(weights[:, t], w, atol=1e-6, rtol=1e-5)


def test_inference_steps_look_up_projected_embeddings_instead_of_projecting():
    """Without input feeding, eval-mode states carry the first layer's projection of every embedding."""
    model = _model(input_feeding=False)
    src, src_len, tgt = _batch()
    state = model.encode(src, src_len)
    cell = model.decoder.rnn.cells[0]
    torch.testing.assert_close(state.inputs, cell.project(model.decoder.embed.weight))
    looked_up, _ = model.step(tgt[:, 1], state)
    computed, _ = model.step(tgt[:, 1], state._replace(inputs=None))
    torch.testing.assert_close(looked_up, computed)
    assert state.select(torch.tensor([2, 0])).inputs is state.inputs
    assert model.train().encode(src, src_len).inputs is None  # dropout must see each embedding
    assert _model().encode(src, src_len).inputs is None  # input feeding: the input depends on h̃_{t-1}


@pytest.mark.parametrize("overrides", CONFIGS)
def test_selected_rows_share_the_sources_and_step_as_copies_would(overrides):
    """select() picks, repeats and drops batch rows without copying the encoder outputs; steps and teacher
    forcing from such a state equal those from a state whose sources were copied row by row."""
    model = _model(**overrides)
    src, src_len, tgt = _batch()
    state = model.encode(src, src_len)
    index = torch.tensor([2, 2, 0, 3, 3, 3])
    picked = state.select(index).select(torch.tensor([5, 0, 1, 2]))  # rows 3, 2, 2, 0 of the batch
    assert picked.memory is state.memory and picked.cache is state.cache and picked.mask is state.mask
    assert picked.rows.tolist() == [3, 2, 2, 0]
    rows = picked.rows
    values = state.values[rows] if state.values is not None else None
    copied = picked._replace(memory=state.memory[rows], cache=state.cache[rows], mask=state.mask[rows], rows=None,
                             values=values)
    for t in range(3):
        y = tgt[rows, t]
        got, picked, w_got = model.decoder.step(y, picked)
        want, copied, w_want = model.decoder.step(y, copied)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        if w_want is not None:
            torch.testing.assert_close(w_got, w_want, atol=1e-6, rtol=1e-5)
    forced, _ = model.teacher_force(tgt[rows], model.encode(src, src_len).select(rows))
    torch.testing.assert_close(forced, model(src[rows], src_len[rows], tgt[rows])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", CONFIGS)
def test_inference_attends_over_projected_encoder_outputs_as_eq5_would(overrides):
    """In eval mode the state carries W_cc h̄_s; steps and teacher forcing equal eq. 5 computed as written."""
    model = _model(**overrides)
    src, src_len, tgt = _batch()
    state = model.encode(src, src_len)
    if model.decoder.attention is None:
        assert state.values is None
        return
    W = model.decoder.combine.weight
    torch.testing.assert_close(state.values, state.memory @ W[:, : state.memory.shape[-1]].T)
    assert model.train().encode(src, src_len).values is None  # training runs eq. 5 as written
    model.eval()
    plain = state._replace(values=None)
    for t in range(3):
        got, state, w_got = model.decoder.step(tgt[:, t], state)
        want, plain, w_want = model.decoder.step(tgt[:, t], plain)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w_got, w_want)
        with torch.no_grad():  # decoding: W_ch h goes into the attention's output in place
            fast, _, w_fast = model.decoder.step(tgt[:, t], state)
            torch.testing.assert_close(fast, model.decoder.step(tgt[:, t], plain)[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(w_fast, model.decoder.step(tgt[:, t], plain)[2])
    forced, _ = model.teacher_force(tgt, model.encode(src, src_len))
    as_written, _ = model.teacher_force(tgt, model.encode(src, src_len)._replace(values=None))
    torch.testing.assert_close(forced, as_written, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", CONFIGS)
def test_split_combine_computes_what_the_whole_w_c_did(overrides):
    """W_c held as its two halves (what int8/bf16 copies convert) keeps eq. 5 and the projected values."""
    from seqlab.seq2seq.decoder import SplitCombine

    model = _model(**overrides)
    src, src_len, tgt = _batch()
    want_forced, _ = model.teacher_force(tgt, model.encode(src, src_len))
    state = model.encode(src, src_len)
    want_step, _, _ = model.decoder.step(tgt[:, 0], state)
    model.decoder.split_combine()
    if model.decoder.attention is None:
        assert not hasattr(model.decoder, "combine")
        return
    assert isinstance(model.decoder.combine, SplitCombine)
    got_state = model.encode(src, src_len)
    torch.testing.assert_close(got_state.values, state.values)
    torch.testing.assert_close(model.decoder.step(tgt[:, 0], got_state)[0], want_step)
    torch.testing.assert_close(model.teacher_force(tgt, got_state)[0], want_forced, atol=1e-5, rtol=1e-5)
    as_written, _ = model.teacher_force(tgt, got_state._replace(values=None))  # SplitCombine.forward
    torch.testing.assert_close(as_written, want_forced, atol=1e-5, rtol=1e-5)
    # A second call leaves the split as it is.
    halves = model.decoder.combine
    model.decoder.split_combine()
    assert model.decoder.combine is halves


@pytest.mark.parametrize("overrides", CONFIGS[:3])
def test_attention_is_a_distribution_over_real_letters(overrides):
    model = _model(**overrides)
    src, src_len, tgt = _batch()
    _, weights = model(src, src_len, tgt)  # (B, T, S)
    real = torch.arange(src.shape[1]) < src_len.unsqueeze(1)  # (B, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    assert torch.all(weights.masked_select(~real.unsqueeze(1).expand_as(weights)) == 0)


@pytest.mark.parametrize("overrides", CONFIGS)
def test_beam_one_equals_greedy(overrides):
    model = _model(**overrides)
    src, src_len, _ = _batch()
    greedy = model.generate(src, src_len, bos=BOS, eos=EOS, beam=1, max_len=8)
    beam = beam_search(model, model.encode(src, src_len), batch_size=4, beam_size=1, bos=BOS, eos=EOS, max_len=8)
    assert beam.tokens == greedy.tokens
    torch.testing.assert_close(beam.scores, greedy.scores)


@pytest.mark.parametrize("overrides", CONFIGS[:4])
def test_batched_beam_equals_one_sentence_at_a_time(overrides):
    model = _model(**overrides)
    src, src_len, _ = _batch()
    batched = model.generate(src, src_len, bos=BOS, eos=EOS, beam=4, max_len=8)
    for b in range(src.shape[0]):
        n = int(src_len[b])
        alone = model.generate(src[b : b + 1, :n], src_len[b : b + 1], bos=BOS, eos=EOS, beam=4, max_len=8)
        assert alone.tokens[0] == batched.tokens[b]
        torch.testing.assert_close(alone.scores[0], batched.scores[b], atol=1e-5, rtol=1e-5)


def test_beam_scores_are_model_log_probabilities():
    model = _model()
    src, src_len, _ = _batch()
    result = model.generate(src, src_len, bos=BOS, eos=EOS, beam=3, max_len=8)
    for b, tokens in enumerate(result.tokens):
        tgt = torch.tensor([[BOS, *tokens]])
        logits, _ = model(src[b : b + 1], src_len[b : b + 1], tgt)
        log_probs = torch.log_softmax(logits[0], -1)
        total = log_probs.gather(1, torch.tensor([*tokens, EOS]).unsqueeze(1)).sum()
        torch.testing.assert_close(total, result.scores[b], atol=1e-4, rtol=1e-4)


def test_reverse_padded_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_padded(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]


def test_reversed_source_encoder_sees_reversed_sequence():
    normal, reverse = _model(reverse_source=False), _model(reverse_source=True)
    src, src_len, _ = _batch()
    memory_r, _ = reverse.encoder(src, src_len)
    memory_n, _ = normal.encoder(reverse_padded(src, src_len), src_len)
    torch.testing.assert_close(memory_r, reverse_padded(memory_n, src_len))


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="input_feeding needs attention"):
        ModelConfig(attention="none").validate()
    with pytest.raises(ValueError, match="unknown cell"):
        ModelConfig(cell="transformer").validate()
    with pytest.raises(ValueError, match="dot attention needs"):
        ModelConfig(attention="dot", enc_hidden=4, dec_hidden=4).validate()
