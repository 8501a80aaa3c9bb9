"""Ensembles decode through the same search interface as one model."""

import pytest
import torch

from seqlab.errors import SeqlabError
from seqlab.seq2seq.ensemble import Ensemble
from seqlab.seq2seq.model import ModelConfig, Seq2Seq
from seqlab.tasks.g2p import G2PModel, G2PTask, save_ensemble
from seqlab.train import Trainer

from conftest import synthetic_g2p

CONFIG = ModelConfig(emb_size=8, enc_hidden=12, enc_layers=1, dec_hidden=16, input_feeding=False, dropout=0.0)


def _model(seed):
    torch.manual_seed(seed)
    return Seq2Seq(9, 11, CONFIG).eval()


def _batch():
    src = torch.tensor([[3, 4, 5, 6], [7, 8, 3, 0]])
    return src, torch.tensor([4, 3]), torch.tensor([[1, 4, 5], [1, 6, 0]])


def test_one_member_is_the_model_itself():
    model = _model(0)
    src, src_len, tgt = _batch()
    logits, weights = model(src, src_len, tgt)
    log_probs, ens_weights = Ensemble([model])(src, src_len, tgt)
    torch.testing.assert_close(log_probs, torch.log_softmax(logits, -1))
    torch.testing.assert_close(ens_weights, weights)


def test_step_averages_member_probabilities():
    a, b = _model(0), _model(1)
    ensemble = Ensemble([a, b])
    src, src_len, _ = _batch()
    y = torch.tensor([1, 1])
    log_probs, _ = ensemble.step(y, ensemble.encode(src, src_len))
    pa, _ = a.step(y, a.encode(src, src_len))
    pb, _ = b.step(y, b.encode(src, src_len))
    torch.testing.assert_close(log_probs.exp(), (pa.exp() + pb.exp()) / 2)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2))


def test_beam_one_equals_greedy_and_identical_members_change_nothing():
    model = _model(0)
    src, src_len, _ = _batch()
    single = model.generate(src, src_len, bos=1, eos=2, beam=3)
    twins = Ensemble([model, model])
    assert twins.generate(src, src_len, bos=1, eos=2, beam=3).tokens == single.tokens
    assert twins.generate(src, src_len, bos=1, eos=2, beam=1).tokens == \
        twins.generate(src, src_len, bos=1, eos=2).tokens == model.generate(src, src_len, bos=1, eos=2).tokens


def _train(task, run_dir, seed):
    torch.manual_seed(seed)
    Trainer(task.build_model(), task, task.config, run_dir).fit(log=lambda *_: None)
    return run_dir / "best"


def test_saved_float16_ensemble_loads_and_pronounces(tiny_task, tmp_path):
    task = tiny_task(epochs=2)
    folders = [_train(task, tmp_path / f"run{k}", k) for k in range(2)]
    meta = save_ensemble(folders, tmp_path / "ens", dtype=torch.float16)
    assert meta["dtype"] == "float16" and len(meta["members"]) == 2
    loaded = G2PModel.from_checkpoint(tmp_path / "ens")
    assert isinstance(loaded.model, Ensemble)
    members = [G2PModel.from_checkpoint(f) for f in folders]
    rebuilt = Ensemble([m.model for m in members]).eval()
    for p in rebuilt.parameters():  # the stored precision
        p.data = p.data.half().float()
    words = ["abc", "hgfe", "dd"]
    expected = G2PModel(rebuilt, members[0].letters, members[0].phones).pronounce(words, beam=2)
    assert loaded.pronounce(words, beam=2) == expected
    assert loaded.attention("abc", expected[0]).sum(-1).allclose(torch.ones(len(expected[0]) + 1))


def test_int8_ensemble_pronounces_like_its_dequantised_members(tiny_task, tmp_path):
    from seqlab.compress import dequantize_state, quantize_state

    task = tiny_task(epochs=2)
    folders = [_train(task, tmp_path / f"run{k}", k) for k in range(2)]
    meta = save_ensemble(folders, tmp_path / "ens8", dtype=torch.int8)
    assert meta["dtype"] == "int8"
    loaded = G2PModel.from_checkpoint(tmp_path / "ens8")
    members = [G2PModel.from_checkpoint(f) for f in folders]
    rebuilt = Ensemble([m.model for m in members]).eval()
    rebuilt.load_state_dict(dequantize_state(quantize_state(rebuilt.state_dict())))
    words = ["abc", "hgfe", "dd"]
    expected = G2PModel(rebuilt, members[0].letters, members[0].phones).pronounce(words, beam=2)
    assert loaded.pronounce(words, beam=2) == expected
    size = sum(p.stat().st_size for p in (tmp_path / "ens8").iterdir())
    full = sum(p.stat().st_size for p in folders[0].iterdir())
    assert size < full  # two int8 members take less room than one float32 model


def test_an_ensemble_needs_two_checkpoints_with_one_vocabulary(tiny_task, tmp_path):
    task = tiny_task(epochs=1)
    folder = _train(task, tmp_path / "run", 0)
    with pytest.raises(SeqlabError, match="at least two"):
        save_ensemble([folder], tmp_path / "ens")
    data = synthetic_g2p()
    data["train"] = [(w.replace("a", "z"), p) for w, p in data["train"]]  # another alphabet
    other = _train(G2PTask(task.config, data), tmp_path / "other", 0)
    with pytest.raises(SeqlabError, match="other vocabularies"):
        save_ensemble([folder, other], tmp_path / "ens")
