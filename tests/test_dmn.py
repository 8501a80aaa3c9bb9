"""DMN+ modules (shapes, masks, the attention GRU, gradients) and the ``dmn`` recipe end to end."""

from pathlib import Path

import pytest
import torch

from seqlab.cli import main
from seqlab.config import load_config
from seqlab.data.babi import generate
from seqlab.errors import ConfigError, SeqlabError
from seqlab.memory.dmn import AttentionGRUCell, DMNConfig, DMNPlus, EpisodicMemory, position_encoding
from seqlab.tasks import RECIPES, REPORTS
from seqlab.tasks.dmn import DMNModel, DMNRecipeConfig, DMNTask, encode_batch, report_dmn
from seqlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
SMALL = DMNConfig(emb_size=12, hidden_size=10, passes=3, dropout=0.0)


def _batch(seed=0, B=3, S=5, W=4, Q=3, vocab=20):
    g = torch.Generator().manual_seed(seed)
    story = torch.randint(1, vocab, (B, S, W), generator=g)
    story[0, 3:] = 0  # story 0: 3 sentences
    story[1, 4:] = 0  # story 1: 4 sentences
    story[1, 0, 2:] = 0  # a short sentence
    question = torch.randint(1, vocab, (B, Q), generator=g)
    lengths = torch.tensor([Q, 2, 1])
    question[1, 2:] = 0
    question[2, 1:] = 0
    return story, question, lengths


def test_position_encoding_matches_the_formula_worked_by_hand():
    # M = 2 words, D = 2: l_1d = 1/2 - (d/2)(1 - 1) = 1/2;  l_2d = 0 - (d/2)(1 - 2) = d/2.
    weights = position_encoding(torch.tensor([2, 1]), max_len=3, dim=2)  # (2, 3, 2)
    torch.testing.assert_close(weights[0], torch.tensor([[0.5, 0.5], [0.5, 1.0], [0.0, 0.0]]))
    # M = 1: l_1d = 0 - (d/2)(1 - 2) = d/2; the padded words get 0.
    torch.testing.assert_close(weights[1], torch.tensor([[0.5, 1.0], [0.0, 0.0], [0.0, 0.0]]))


def test_shapes_and_attention_over_real_sentences_only():
    torch.manual_seed(0)
    model = DMNPlus(20, 7, SMALL).eval()
    story, question, lengths = _batch()
    out = model(story, question, lengths)
    assert out.logits.shape == (3, 7)
    assert out.gates.shape == (3, 3, 5)  # (passes, B, S)
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert (out.gates[:, ~real] == 0).all()  # padding sentences never get attention
    assert (out.gates[:, real] > 0).all()
    torch.testing.assert_close(out.gates.sum(-1), torch.ones(3, 3))  # a softmax over the real sentences


def test_padding_does_not_change_answers_or_attention():
    torch.manual_seed(1)
    model = DMNPlus(20, 7, SMALL).eval()
    story, question, lengths = _batch()
    out = model(story, question, lengths)
    for b in range(3):  # each story alone, cut to its own size, gives the same result
        S = int((story[b] != 0).any(-1).sum())
        W = int((story[b] != 0).sum(-1).max())
        alone = model(story[b : b + 1, :S, :W], question[b : b + 1, : lengths[b]], lengths[b : b + 1])
        torch.testing.assert_close(alone.logits[0], out.logits[b])
        torch.testing.assert_close(alone.gates[:, 0], out.gates[:, b, :S])
    wider = torch.nn.functional.pad(story, (0, 2, 0, 3))  # 2 more padding words, 3 more padding sentences
    padded = model(wider, torch.nn.functional.pad(question, (0, 4)), lengths)
    torch.testing.assert_close(padded.logits, out.logits)
    torch.testing.assert_close(padded.gates[..., :5], out.gates)


def test_attention_gru_follows_its_equations():
    torch.manual_seed(2)
    cell = AttentionGRUCell(4, 3)
    x, h = torch.randn(2, 4), torch.randn(2, 3)
    xp = cell.project(x)
    # gate 0: the fact is skipped, the state passes through unchanged
    torch.testing.assert_close(cell.step(xp, torch.zeros(2, 1), h), h)
    # gate g: h = g * h~ + (1 - g) * h_prev, with h~ = tanh(W x + r * (U h) + b), r = sigmoid(W_r x + U_r h + b_r)
    W, b = cell.input.weight, cell.input.bias
    U = cell.hidden.weight
    r = torch.sigmoid(x @ W[:3].T + b[:3] + h @ U[:3].T)
    candidate = torch.tanh(x @ W[3:].T + b[3:] + r * (h @ U[3:].T))
    g = torch.tensor([[0.25], [1.0]])
    torch.testing.assert_close(cell.step(xp, g, h), g * candidate + (1 - g) * h)


def test_episodic_memory_gradients_in_float64():
    torch.manual_seed(3)
    memory = EpisodicMemory(4, passes=2).double()
    facts = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    q = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.autograd.gradcheck(lambda f, q: memory(f, mask, q)[0], (facts, q))


def test_tied_memory_shares_one_update_layer():
    untied = DMNPlus(20, 7, SMALL)
    tied = DMNPlus(20, 7, DMNConfig(emb_size=12, hidden_size=10, passes=3, tied_memory=True))
    assert len(untied.memory.update) == 3 and len(tied.memory.update) == 1
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == 2 * (3 * 10 * 10 + 10)


def test_a_story_needs_a_sentence():
    model = DMNPlus(20, 7, SMALL)
    story, question, lengths = _batch()
    story[2] = 0
    with pytest.raises(ValueError, match="at least one sentence"):
        model(story, question, lengths)


# --------------------------------------------------------------------------
# the recipe
# --------------------------------------------------------------------------

TINY = dict(emb_size=32, hidden_size=32, dropout=0.0, lr=0.01, batch_size=50, threads=1, patience=8)


def _train(run_dir, tasks, train_size, epochs):
    config = DMNRecipeConfig(tasks=tasks, train_size=train_size, test_size=100, epochs=epochs, **TINY)
    task = DMNTask(config)
    torch.manual_seed(0)
    return Trainer(task.build_model(), task, config, run_dir).fit(log=lambda *_: None), task


def test_a_tiny_dmn_learns_task_1(tmp_path):
    result, task = _train(tmp_path / "run", "1", 1000, 4)
    model = DMNModel.from_checkpoint(tmp_path / "run" / "best")
    test = generate(1, 200, task.config.data_seed, split="test")
    predicted, gates = model.predict(test)
    accuracy = sum(p == s.answer for p, s in zip(predicted, test)) / len(test)
    assert accuracy > 0.9, f"{accuracy:.1%} after {result.epochs} epochs"
    # The last pass looks at the supporting fact (the person's last move) more than at all the rest.
    on_support = sum(float(g[-1, list(s.support)].sum()) for g, s in zip(gates, test)) / len(test)
    assert on_support > 0.5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    _train(runs / "dmn", "1,8,15", 60, 1)
    return runs


def test_checkpoint_round_trip_and_report(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    model = DMNModel.from_checkpoint(runs / "dmn" / "best")
    stories = generate(8, 5, 0, split="test")
    predicted, gates = model.predict(stories)
    logits = model.model(*encode_batch(stories, model.words)).logits
    assert predicted == [model.answers.itos[int(i)] for i in logits.argmax(-1)]
    assert [g.shape for g in gates] == [(3, len(s.sentences)) for s in stories]

    written = report_dmn(runs, tmp_path / "out")
    assert [p.name for p in written] == ["dmn.md", "dmn.json", "dmn_attention.png"]
    page = (tmp_path / "out" / "dmn.md").read_text()
    # The page names the command that trained the run: configs/dmn.yaml plus the settings that differ.
    command = next(line for line in page.splitlines() if line.startswith("seqlab train dmn"))
    head = "seqlab train dmn --config configs/dmn.yaml --run-dir runs/dmn "
    assert command.startswith(head)
    assert load_config(DMNRecipeConfig, "configs/dmn.yaml", command[len(head):].split()) == model.config
    assert "seqlab's own bAbI-style simulator" in page
    assert "| 15 | basic deduction |" in page and "| 8 | lists/sets |" in page
    assert "DMN+ paper, real bAbI-10k" in page and "100.0%" in page  # the paper's task 1
    assert (tmp_path / "out" / "dmn_attention.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_a_run_names_the_command(tmp_path):
    with pytest.raises(SeqlabError) as err:
        report_dmn(tmp_path, tmp_path / "out")
    assert "seqlab train dmn --config configs/dmn.yaml --run-dir runs/dmn" in err.value.hint


def test_cli_train_and_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert "dmn" in RECIPES and "dmn" in REPORTS
    args = ["train", "dmn", "--config", "configs/dmn.yaml", "tasks=1,15", "train_size=20", "epochs=1",
            "hidden_size=8", "emb_size=8", "max_minutes=null", "threads=1", "--run-dir", str(tmp_path / "dmn")]
    assert main(args) == 0
    assert (tmp_path / "dmn" / "best" / "meta.json").is_file()
    assert main(["report", "dmn", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "seqlab train dmn" in capsys.readouterr().err


def test_config_file_and_bad_values(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = load_config(DMNRecipeConfig, "configs/dmn.yaml")
    assert config.task_list == (1, 2, 3, 6, 7, 8, 11, 15, 16, 17) and config.train_size == 10000
    assert config.max_minutes is not None and config.max_minutes <= 60
    for bad in (["tasks=1,4"], ["passes=0"], ["train_size=0"], ["hidden"]):
        with pytest.raises(ConfigError):
            load_config(DMNRecipeConfig, "configs/dmn.yaml", bad)
