"""Right-to-left rescoring of n-best lists (seqlab.seq2seq.rerank) and its G2P wiring."""

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.seq2seq.ensemble import Ensemble
from seqlab.seq2seq.model import ModelConfig, Seq2Seq
from seqlab.seq2seq.rerank import bidirectional_candidates, rerank, sequence_log_probs
from seqlab.tasks.g2p import G2PModel, save_ensemble, tune_rescore_weight
from seqlab.train import Trainer

from conftest import synthetic_g2p

CONFIG = ModelConfig(emb_size=8, enc_hidden=12, enc_layers=1, dec_hidden=16, input_feeding=False, dropout=0.0)
BOS, EOS = 1, 2


def _model(seed):
    torch.manual_seed(seed)
    return Seq2Seq(9, 11, CONFIG).eval()


def _source():
    return torch.tensor([[3, 4, 5, 6], [7, 8, 3, 0], [5, 5, 0, 0]]), torch.tensor([4, 3, 2])


@pytest.mark.parametrize("make", [lambda: _model(0), lambda: Ensemble([_model(0), _model(1)]).eval()])
def test_teacher_forced_score_equals_the_search_score(make):
    model = make()
    src, src_len = _source()
    found = model.generate(src, src_len, bos=BOS, eos=EOS, beam=3, max_len=6)
    scores = sequence_log_probs(model, src, src_len, found.tokens, bos=BOS, eos=EOS)
    torch.testing.assert_close(scores, found.scores, atol=1e-5, rtol=1e-5)


def test_scores_of_different_lengths_do_not_leak_padding():
    model = _model(0)
    src, src_len = _source()
    hyps = [[4], [5, 6, 7, 8], []]
    together = sequence_log_probs(model, src, src_len, hyps, bos=BOS, eos=EOS)
    alone = torch.cat([sequence_log_probs(model, src[i : i + 1], src_len[i : i + 1], [h], bos=BOS, eos=EOS)
                       for i, h in enumerate(hyps)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_candidates_pool_both_directions_and_weight_zero_ranks_by_the_left_to_right_model():
    l2r, r2l = _model(0), _model(1)
    src, src_len = _source()
    found = bidirectional_candidates(l2r, r2l, src, src_len, bos=BOS, eos=EOS, beam=3)
    forward = l2r.generate(src, src_len, bos=BOS, eos=EOS, beam=3)
    backward = r2l.generate(src, src_len, bos=BOS, eos=EOS, beam=3)
    for i, hyps in enumerate(found.hyps):
        assert len(set(map(tuple, hyps))) == len(hyps)  # no duplicates
        for tokens, _ in forward.nbest[i]:
            assert tokens in hyps
        for tokens, _ in backward.nbest[i]:
            assert tokens[::-1] in hyps
        # Both models' scores of every candidate, whether kept from a search or teacher-forced: the
        # backward scores are the right-to-left model reading the reversed candidates.
        rows = [i] * len(hyps)  # one source row each
        expect = sequence_log_probs(l2r, src[rows], src_len[rows], hyps, bos=BOS, eos=EOS)
        torch.testing.assert_close(found.l2r[i], expect, atol=1e-5, rtol=1e-5)
        expect = sequence_log_probs(r2l, src[rows], src_len[rows], [h[::-1] for h in hyps], bos=BOS, eos=EOS)
        torch.testing.assert_close(found.r2l[i], expect, atol=1e-5, rtol=1e-5)
        # A model's own n-best keep the log-probabilities its search summed.
        own = dict(zip(map(tuple, (h for h, _ in forward.nbest[i])), forward.nbest_log_probs[i]))
        for k, h in enumerate(hyps):
            if tuple(h) in own:
                assert float(found.l2r[i][k]) == own[tuple(h)]
    best = found.best(0.0)
    for i, hyp in enumerate(best):  # never worse for the left-to-right model than its own beam's best
        score = found.l2r[i][found.hyps[i].index(hyp)] / (len(hyp) + 1)
        assert score >= forward.scores[i] / (len(forward.tokens[i]) + 1) - 1e-5
    assert rerank(l2r, r2l, src, src_len, bos=BOS, eos=EOS, beam=3, weight=0.0) == best
    with pytest.raises(ValueError, match="weight"):
        rerank(l2r, r2l, src, src_len, bos=BOS, eos=EOS, beam=3, weight=1.5)


def _train(task, run_dir, seed):
    torch.manual_seed(seed)
    Trainer(task.build_model(), task, task.config, run_dir).fit(log=lambda *_: None)
    return run_dir / "best"


def test_right_to_left_member_rescores_the_ensemble(tiny_task, tmp_path):
    forward = _train(tiny_task(epochs=3), tmp_path / "l2r", 0)
    backward_task = tiny_task(epochs=3, reverse_target=True)
    # the right-to-left task learns the reversed phones: with the synthetic rule, the letters in order
    assert backward_task.phones.decode(backward_task.tgt[0]) == \
        [ch.upper() for ch in backward_task.letters.decode(backward_task.src[0])]
    backward = _train(backward_task, tmp_path / "r2l", 1)
    alone = G2PModel.from_checkpoint(backward)
    assert alone.reverse and alone.rescorer is None
    words = ["abc", "hgfe", "dd", "gh"]
    # decoded right to left, printed in reading order (the synthetic rule reads the word backwards)
    assert [p[0] for p in alone.pronounce(words)] == [w[-1].upper() for w in words]
    weights = alone.attention("abc", ["C", "B", "A"])
    assert weights.shape == (4, 3) and weights.sum(-1).allclose(torch.ones(4))

    meta = save_ensemble([forward, backward], tmp_path / "ens", rescore_weight=0.3)
    assert meta["rescore_weight"] == 0.3
    both = G2PModel.from_checkpoint(tmp_path / "ens")
    assert isinstance(both.model, Seq2Seq) and both.rescorer is not None and not both.reverse
    single = G2PModel.from_checkpoint(forward)
    assert both.pronounce(words, beam=1) == single.pronounce(words, beam=1)  # greedy does not rescore
    found = both.candidates(words, beam=3)
    assert both.pronounce(words, beam=3) == [both.phones.decode(h) for h in found.best(0.3)]
    assert [both.phones.decode(h) for h in found.best(0.0)] == [
        both.phones.decode(h) for h in found.best(0.0)]  # deterministic

    data = synthetic_g2p()
    tuning = tune_rescore_weight(both, "dev", beam=3, weights=(0.0, 0.5, 1.0), length_penalties=(0.5, 1.0),
                                 data=data, log=lambda *_: None)
    assert set(tuning["wer"]) == {f"w={w} a={a}" for w in ("0", "0.5", "1") for a in ("0.5", "1")}
    assert tuning["weight"] in (0.0, 0.5, 1.0) and tuning["length_penalty"] in (0.5, 1.0)
    assert tuning["wer"][f"w={tuning['weight']:g} a={tuning['length_penalty']:g}"] == min(tuning["wer"].values())
    meta = save_ensemble([forward, backward], tmp_path / "tuned", rescore_weight=0.3, rescore_length_penalty=0.5)
    tuned = G2PModel.from_checkpoint(tmp_path / "tuned")
    assert meta["rescore_length_penalty"] == tuned.rescore_length_penalty == 0.5
    assert tuned.pronounce(words, beam=3) == [both.phones.decode(h) for h in found.best(0.3, 0.5)]

    with pytest.raises(SeqlabError, match="no right-to-left"):
        single.candidates(words)
    save_ensemble([backward, backward], tmp_path / "only-r2l")
    with pytest.raises(SeqlabError, match="left-to-right"):
        G2PModel.from_checkpoint(tmp_path / "only-r2l")
