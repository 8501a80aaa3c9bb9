"""The NTM and ACT recipes: episodes as the papers define them, a tiny NTM that learns copy, the reports."""

import pytest
import torch

from seqlab.config import load_config
from seqlab.errors import ConfigError, SeqlabError
from seqlab.tasks import RECIPES, REPORTS
from seqlab.tasks.act import (
    AdditionConfig,
    ParityConfig,
    addition_batch,
    parity_batch,
    report_act,
    sweep_folders,
    train_addition,
    train_parity,
)
from seqlab.tasks.ntm import (
    CopyConfig,
    RecallConfig,
    RepeatCopyConfig,
    copy_episode,
    load_run,
    recall_episode,
    repeat_copy_episode,
    report_ntm,
    train_copy,
    train_recall,
    train_repeat_copy,
)

QUIET = dict(log=lambda *_: None)


# ------------------------------------------------------------ episodes


def test_copy_episode_layout():
    g = torch.Generator().manual_seed(0)
    ep = copy_episode(g, batch=3, length=5, bits=8)
    assert ep.inputs.shape == (11, 3, 9) and ep.targets.shape == (5, 3, 8)
    torch.testing.assert_close(ep.inputs[:5, :, :8], ep.targets)  # the answer is the input sequence
    assert ep.inputs[5, :, 8].tolist() == [1.0] * 3 and ep.inputs[5, :, :8].sum() == 0  # delimiter step
    assert ep.inputs[:5, :, 8].sum() == 0 and ep.inputs[6:].sum() == 0  # flag only there; blank answer phase


def test_repeat_copy_episode_layout():
    g = torch.Generator().manual_seed(1)
    ep = repeat_copy_episode(g, batch=2, length=3, repeats=4, bits=8)
    assert ep.inputs.shape == (3 + 1 + 13, 2, 10) and ep.targets.shape == (13, 2, 9)
    seq = ep.inputs[:3, :, :8]
    for k in range(4):
        torch.testing.assert_close(ep.targets[3 * k : 3 * k + 3, :, :8], seq)
    assert ep.targets[:-1, :, 8].sum() == 0 and ep.targets[-1, :, 8].tolist() == [1.0, 1.0]  # end marker last
    assert ep.targets[-1, :, :8].sum() == 0


def test_repeat_count_is_normalised_over_the_training_range():
    counts = [float(repeat_copy_episode(torch.Generator().manual_seed(0), 1, 1, k).inputs[1, 0, 9])
              for k in range(1, 11)]
    assert abs(sum(counts) / 10) < 1e-6
    assert abs(sum(c * c for c in counts) / 10 - 1.0) < 1e-6


def test_recall_answer_is_the_item_after_the_query():
    g = torch.Generator().manual_seed(2)
    ep = recall_episode(g, batch=16, items=4, item_length=3, bits=6)
    x = ep.inputs
    assert x.shape == (4 * 4 + 4 + 1 + 3, 16, 8) and ep.targets.shape == (3, 16, 6)
    for b in range(16):
        items = [x[4 * i + 1 : 4 * i + 4, b, :6] for i in range(4)]
        assert all(x[4 * i, b, 6] == 1 for i in range(4))  # item delimiters
        assert x[16, b, 7] == 1 and x[20, b, 7] == 1  # query delimiters around the query item
        query = x[17:20, b, :6]
        index = next(i for i in range(3) if torch.equal(items[i], query))
        torch.testing.assert_close(ep.targets[:, b], items[index + 1])


def test_parity_batch_targets():
    g = torch.Generator().manual_seed(3)
    batch = parity_batch(g, 500, bits=64)
    x = batch.inputs[0]
    assert batch.inputs.shape == (1, 500, 64)
    set_entries = x.ne(0).sum(1)
    assert set_entries.min() >= 1 and set_entries.max() <= 64
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert batch.targets[0].tolist() == [float(int((row == 1).sum()) % 2) for row in x]
    assert 0.4 < float(batch.targets.mean()) < 0.6


def test_addition_targets_are_running_sums():
    g = torch.Generator().manual_seed(4)
    batch = addition_batch(g, 64, numbers=5)
    assert batch.inputs.shape == (5, 64, 50) and batch.targets.shape == (4, 64, 6)
    for b in range(64):
        total = 0
        for t in range(5):
            slots = batch.inputs[t, b].view(5, 10)
            digits = [int(d.argmax()) for d in slots if d.sum() > 0]
            assert 1 <= len(digits) <= 5 and all(d.sum() == 0 for d in slots[len(digits):])
            total += int("".join(map(str, digits)))
            if t:
                classes = batch.targets[t - 1, b].tolist()
                written = "".join(str(c) for c in classes if c != 10)
                assert int(written) == total and classes[len(written):] == [10] * (6 - len(written))
    assert addition_batch(g, 3, numbers=1).targets.shape == (0, 3, 6)  # nothing to sum yet


# -------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["ntm-copy", "ntm-repeat-copy", "ntm-recall", "act-parity", "act-addition"])
def test_recipe_configs_load(name):
    config = load_config(RECIPES[name].config, f"configs/{name}.yaml")
    assert config.max_minutes is not None and config.max_minutes <= 60
    assert {"ntm", "act"} <= set(REPORTS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=gru"], "model must be"),
        (["controller=xyz"], "unknown controller"),
        (["min_length=5", "max_length=2"], "min_length"),
    ],
)
def test_bad_ntm_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CopyConfig, None, overrides)


def test_bad_sweep_is_a_config_error():
    with pytest.raises(ConfigError, match="sweep entries"):
        load_config(ParityConfig, None, ["sweep=none,fast"])


# ------------------------------------------------------------- learning


def test_tiny_ntm_learns_copy(tmp_path):
    """A feed-forward-controller NTM copies 4-bit sequences of length 1-3 after 400 steps."""
    config = CopyConfig(bits=4, max_length=3, controller="feedforward", controller_size=32, memory_slots=8,
                        memory_width=8, batch_size=16, batches_per_epoch=50, eval_batches=4, eval_batch_size=32,
                        lr=0.02, min_lr=0.0, epochs=8, patience=8, max_minutes=None, seed=2, threads=1)
    result = train_copy(config, tmp_path / "run", **QUIET)
    # Chance is 4 wrong bits per sequence (mean length 2 x 4 bits x 1/2).
    assert result.best_metrics["bit_errors"] < 0.1, result.best_metrics
    run = load_run(tmp_path / "run")
    assert run.meta["metrics"]["bits"] == result.best_metrics["bits"]


# -------------------------------------------------------------- reports

TINY_NTM = dict(controller_size=8, memory_slots=16, memory_width=4, lstm_size=8, lstm_layers=1, batch_size=4,
                batches_per_epoch=2, eval_batches=1, eval_batch_size=4, epochs=1, max_minutes=None, threads=1)
TINY_ACT = dict(hidden_size=8, batch_size=8, batches_per_epoch=2, eval_sequences=20, epochs=1, max_minutes=None,
                max_steps=4, threads=1)


def test_reports_say_which_runs_are_missing(tmp_path):
    with pytest.raises(SeqlabError, match="missing run folder") as err:
        report_ntm(tmp_path, tmp_path / "out")
    assert "seqlab train ntm-copy" in err.value.hint and "model=lstm" in err.value.hint
    with pytest.raises(SeqlabError, match="missing run folders") as err:
        report_act(tmp_path, tmp_path / "out")
    assert "seqlab train act-parity" in err.value.hint


def test_ntm_report_writes_tables_and_plots(tmp_path):
    runs = tmp_path / "runs"
    train_copy(CopyConfig(**TINY_NTM), runs / "ntm-copy", **QUIET)
    train_copy(CopyConfig(**TINY_NTM, model="lstm"), runs / "ntm-copy-lstm", **QUIET)
    train_repeat_copy(RepeatCopyConfig(**TINY_NTM, max_length=3, max_repeats=3), runs / "ntm-repeat-copy", **QUIET)
    train_recall(RecallConfig(**TINY_NTM, max_items=3), runs / "ntm-recall", **QUIET)
    train_recall(RecallConfig(**TINY_NTM, max_items=3, model="lstm"), runs / "ntm-recall-lstm", **QUIET)
    files = report_ntm(runs, tmp_path / "out")
    md = (tmp_path / "out" / "ntm.md").read_text()
    assert files[0].name == "ntm.md" and all(f.is_file() for f in files)
    assert sum(f.suffix == ".png" for f in files) == 7
    assert "seqlab train ntm-copy --config configs/ntm-copy.yaml" in md and "**paper**" in md
    for length in (30, 50, 80, 120):
        assert f"\n| {length} | " in md


def test_ntm_report_refuses_a_swapped_run(tmp_path):
    runs = tmp_path / "runs"
    for name in ("ntm-copy", "ntm-copy-lstm"):  # both NTM: the "-lstm" folder holds the wrong model
        train_copy(CopyConfig(**TINY_NTM), runs / name, **QUIET)
    train_repeat_copy(RepeatCopyConfig(**TINY_NTM, max_length=2, max_repeats=2), runs / "ntm-repeat-copy", **QUIET)
    for name in ("ntm-recall", "ntm-recall-lstm"):
        train_recall(RecallConfig(**TINY_NTM, max_items=2, model="lstm" if "lstm" in name else "ntm"),
                     runs / name, **QUIET)
    with pytest.raises(SeqlabError, match="expected ntm-copy with model=lstm"):
        report_ntm(runs, tmp_path / "out")


def test_act_sweep_and_report(tmp_path):
    runs = tmp_path / "runs"
    train_parity(ParityConfig(**TINY_ACT, bits=8, sweep="none, 0.01,0.1"), runs / "act-parity", **QUIET)
    train_addition(AdditionConfig(**TINY_ACT, cell="gru", max_numbers=3, sweep="none,0.01"), runs / "act-addition",
                   **QUIET)
    names = [f.name for f in sweep_folders(runs, "act-parity")]
    assert names == ["act-parity-noact", "act-parity-tau0.01", "act-parity-tau0.1"]
    files = report_act(runs, tmp_path / "out")
    md = (tmp_path / "out" / "act.md").read_text()
    assert all(f.is_file() for f in files) and sum(f.suffix == ".png" for f in files) == 6
    assert "| act-parity-tau0.1 | 0.1 |" in md and "| act-parity-noact | - |" in md
    assert "| act-addition-noact | - |" in md and "**paper**" in md
    assert "Parity (8-entry" in md and "act-parity16" not in md  # the optional sweep is absent

    # The optional 16-entry parity sweep gets its own section once both of its runs exist.
    train_parity(ParityConfig(**TINY_ACT, bits=6, sweep="none,0.01"), runs / "act-parity16", **QUIET)
    files = report_act(runs, tmp_path / "out")
    md = (tmp_path / "out" / "act.md").read_text()
    assert "## Parity (6-entry vectors)" in md and "| act-parity16-tau0.01 | 0.01 |" in md
    assert "configs/act-parity16.yaml" in md and (tmp_path / "out" / "act_parity16_ponder.png").is_file()
    assert sum(f.suffix == ".png" for f in files) == 9
