"""The Neural Turing Machine tasks of Graves, Wayne & Danihelka 2014 (arXiv:1410.5401, sec. 4), NTM vs LSTM.

Recipes (``seqlab train NAME``), each with ``model=ntm`` (default) or
``model=lstm`` (the baseline, same data and budget):

* ``ntm-copy`` (sec. 4.1): a sequence of 1-20 random 8-bit vectors, then a
  delimiter flag; the network must output the sequence again.
* ``ntm-repeat-copy`` (sec. 4.2): 1-10 vectors, then a delimiter step whose
  extra input channel holds the number of copies (1-10, normalised to mean
  0 and variance 1); the network must output the sequence that many times,
  then raise an end marker.
* ``ntm-recall`` (sec. 4.3, associative recall): 2-6 items of three 6-bit
  vectors, each after an item delimiter; then a query item between two
  query delimiters; the network must output the item that followed the
  query item.

The cost is the paper's: binary cross-entropy of the outputs in bits,
summed over the output phase of a sequence ("bits per sequence").  Bit
errors count thresholded outputs (at 0.5) that differ from the target.

Departures from the paper, all for a CPU budget: Adam with gradient-norm
clipping instead of RMSProp with momentum; minibatches of 16 sequences
that share one length (the length is drawn per batch, uniformly, as the
paper draws it per sequence); a linear learning-rate decay over a fixed
time budget.  An "epoch" is ``batches_per_epoch`` freshly generated
batches; every epoch ends with an evaluation on a fixed set of episodes.

``seqlab report ntm`` (:func:`report_ntm`) evaluates the finished runs and
writes ``docs/results/ntm.md`` with its plots.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SeqlabError
from ..plot import line_plot, pyplot
from ..memory.ntm import NTM, NTMConfig
from ..nn import Recurrent
from ..provenance import cpu_name, git_commit
from ..train import TrainConfig, Trainer, TrainResult
from ._sampled import SampledTask, load_best

__all__ = [
    "Episode",
    "copy_episode",
    "repeat_copy_episode",
    "recall_episode",
    "NTMTaskConfig",
    "CopyConfig",
    "RepeatCopyConfig",
    "RecallConfig",
    "LSTMBaseline",
    "CopyTask",
    "RepeatCopyTask",
    "RecallTask",
    "train_copy",
    "train_repeat_copy",
    "train_recall",
    "load_run",
    "report_ntm",
]

MODELS = ("ntm", "lstm")
EVAL_SEED = 20141020  # the evaluation episodes are the same for every run and seed
LN2 = math.log(2.0)


# --------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------


class Episode(NamedTuple):
    """A batch of sequences of one shape; the model must produce ``targets`` on its last steps."""

    inputs: Tensor  # (T, B, I)
    targets: Tensor  # (T_out, B, O), compared with the model's outputs at steps T - T_out .. T - 1


def _bits(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).float()


def copy_episode(g: torch.Generator, batch: int, length: int, bits: int = 8) -> Episode:
    """Copy (sec. 4.1): ``length`` random vectors, a delimiter step, then ``length`` blank steps to answer in.

    Inputs have ``bits + 1`` channels (the last is the delimiter flag); the
    targets ``(length, B, bits)`` are the input vectors.
    """
    seq = _bits(g, length, batch, bits)  # (L, B, bits)
    x = torch.zeros(2 * length + 1, batch, bits + 1)
    x[:length, :, :bits] = seq
    x[length, :, bits] = 1.0
    return Episode(x, seq)


def repeat_copy_episode(
    g: torch.Generator, batch: int, length: int, repeats: int, bits: int = 8, repeat_range: tuple[int, int] = (1, 10)
) -> Episode:
    """Repeat copy (sec. 4.2): the sequence, then one step with a delimiter flag and the number of copies.

    The count sits on its own channel, normalised with the mean and
    standard deviation of the uniform training range ``repeat_range``.
    Inputs: ``bits + 2`` channels (bits, delimiter, count).  Targets:
    ``(length * repeats + 1, B, bits + 1)``: the copies, then a step with
    only the end marker (the extra output channel) on.
    """
    lo, hi = repeat_range
    mean, std = (lo + hi) / 2, math.sqrt(((hi - lo + 1) ** 2 - 1) / 12) or 1.0
    seq = _bits(g, length, batch, bits)
    out_len = length * repeats + 1
    x = torch.zeros(length + 1 + out_len, batch, bits + 2)
    x[:length, :, :bits] = seq
    x[length, :, bits] = 1.0
    x[length, :, bits + 1] = (repeats - mean) / std
    y = torch.zeros(out_len, batch, bits + 1)
    y[:-1, :, :bits] = seq.repeat(repeats, 1, 1)
    y[-1, :, bits] = 1.0
    return Episode(x, y)


def recall_episode(g: torch.Generator, batch: int, items: int, item_length: int = 3, bits: int = 6) -> Episode:
    """Associative recall (sec. 4.3): items, then a query item; answer the item that followed it.

    Each item is ``item_length`` random vectors after an item-delimiter
    step; the query item sits between two query-delimiter steps.  Inputs:
    ``bits + 2`` channels (bits, item delimiter, query delimiter).  Targets:
    ``(item_length, B, bits)``.  The query is any item but the last, chosen
    per sequence.
    """
    if items < 2:
        raise ValueError(f"associative recall needs at least 2 items, got {items}")
    step = item_length + 1
    content = _bits(g, items, item_length, batch, bits)  # (items, L, B, bits)
    query = torch.randint(0, items - 1, (batch,), generator=g)  # (B,)
    t_query = items * step
    x = torch.zeros(t_query + step + 1 + item_length, batch, bits + 2)
    for i in range(items):
        x[i * step, :, bits] = 1.0
        x[i * step + 1 : (i + 1) * step, :, :bits] = content[i]
    columns = torch.arange(batch)
    x[t_query, :, bits + 1] = 1.0
    x[t_query + 1 : t_query + step, :, :bits] = content[query, :, columns].transpose(0, 1)
    x[t_query + step, :, bits + 1] = 1.0
    answer = content[query + 1, :, columns].transpose(0, 1)  # (L, B, bits)
    return Episode(x, answer)


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NTMTaskConfig(TrainConfig, NTMConfig):
    """Settings shared by the three NTM recipes: model, LSTM baseline, batches, budget."""

    model: str = "ntm"  # "ntm", or "lstm" for the baseline
    lstm_size: int = 256  # baseline: units per layer (paper: 3 x 256)
    lstm_layers: int = 3  # baseline: stacked layers
    batch_size: int = 16  # sequences per training batch (they share one length)
    batches_per_epoch: int = 100  # fresh batches between two evaluations
    eval_batches: int = 20  # fixed evaluation episodes: this many batches ...
    eval_batch_size: int = 32  # ... of this many sequences

    # Optimisation defaults for these tasks (TrainConfig's are tuned for G2P).
    epochs: int = 100000  # the time budget ends a run, not the epoch count
    lr: float = 1e-3
    clip_norm: float | None = 10.0
    schedule: str = "linear"
    min_lr: float = 1e-5
    patience: int = 50
    max_minutes: float | None = 50.0

    def validate(self) -> None:
        NTMConfig.validate(self)
        TrainConfig.validate(self)
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("lstm_size", "lstm_layers", "batch_size", "batches_per_epoch", "eval_batches", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def ntm_config(self) -> NTMConfig:
        return NTMConfig(**{f.name: getattr(self, f.name) for f in fields(NTMConfig)})


@dataclass(frozen=True)
class CopyConfig(NTMTaskConfig):
    """Copy (sec. 4.1): 8-bit vectors, lengths 1-20."""

    bits: int = 8
    min_length: int = 1
    max_length: int = 20

    def validate(self) -> None:
        NTMTaskConfig.validate(self)
        _check_range("length", self.min_length, self.max_length)
        if self.bits < 1:
            raise ValueError(f"bits must be >= 1, got {self.bits}")


@dataclass(frozen=True)
class RepeatCopyConfig(NTMTaskConfig):
    """Repeat copy (sec. 4.2): 8-bit vectors, lengths 1-10, 1-10 copies."""

    bits: int = 8
    min_length: int = 1
    max_length: int = 10
    min_repeats: int = 1
    max_repeats: int = 10

    def validate(self) -> None:
        NTMTaskConfig.validate(self)
        _check_range("length", self.min_length, self.max_length)
        _check_range("repeats", self.min_repeats, self.max_repeats)
        if self.bits < 1:
            raise ValueError(f"bits must be >= 1, got {self.bits}")


@dataclass(frozen=True)
class RecallConfig(NTMTaskConfig):
    """Associative recall (sec. 4.3): items of three 6-bit vectors, 2-6 items."""

    bits: int = 6
    item_length: int = 3
    min_items: int = 2
    max_items: int = 6

    def validate(self) -> None:
        NTMTaskConfig.validate(self)
        _check_range("items", self.min_items, self.max_items)
        if self.min_items < 2:
            raise ValueError(f"min_items must be >= 2 (the query needs an item after it), got {self.min_items}")
        if self.bits < 1 or self.item_length < 1:
            raise ValueError("bits and item_length must be >= 1")


def _check_range(name: str, lo: int, hi: int) -> None:
    if not 1 <= lo <= hi:
        raise ValueError(f"need 1 <= min_{name} <= max_{name}, got {lo} and {hi}")


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class LSTMBaseline(nn.Module):
    """The paper's baseline: stacked LSTM layers and a linear output (``forward(x (T, B, I)) -> (logits, state)``)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 256, num_layers: int = 3) -> None:
        super().__init__()
        self.rnn = Recurrent("lstm", input_size, hidden_size, num_layers)
        self.output = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, Any]:
        h, state = self.rnn(x, state)
        return self.output(h), state


def _build_model(config: NTMTaskConfig, input_size: int, output_size: int) -> nn.Module:
    if config.model == "ntm":
        return NTM(input_size, output_size, config.ntm_config())
    return LSTMBaseline(input_size, output_size, config.lstm_size, config.lstm_layers)


# --------------------------------------------------------------------------
# Tasks (what the Trainer sees)
# --------------------------------------------------------------------------


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def episode_scores(model: nn.Module, episode: Episode) -> tuple[Tensor, Tensor]:
    """Per sequence: ``(bits (B,), bit errors (B,))`` of the model's outputs over the answer steps."""
    logits, _ = model(episode.inputs)
    logits = logits[-episode.targets.shape[0] :]
    bits = F.binary_cross_entropy_with_logits(logits, episode.targets, reduction="none").sum((0, 2)) / LN2
    errors = ((logits > 0).float() != episode.targets).float().sum((0, 2))
    return bits, errors


class _NTMTask(SampledTask):
    """Loss and evaluation shared by the three recipes; subclasses define the episodes.

    ``sample(g, batch, **shape)``: keyword arguments fix an episode's shape, e.g. ``length=50``.
    """

    metric = "bits"  # bits per sequence on the fixed evaluation episodes
    eval_seed = EVAL_SEED

    def build_model(self) -> nn.Module:
        return _build_model(self.config, self.input_size, self.output_size)

    def loss(self, model: nn.Module, batch: Episode) -> tuple[Tensor, int]:
        logits, _ = model(batch.inputs)
        logits = logits[-batch.targets.shape[0] :]
        bits = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="sum") / LN2
        n = batch.inputs.shape[1]
        self.sequences += n
        return bits, n

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        bits, errors, n = 0.0, 0.0, 0
        for episode in self.eval_set:
            b, e = episode_scores(model, episode)
            bits, errors, n = bits + float(b.sum()), errors + float(e.sum()), n + b.numel()
        return {"bits": bits / n, "bit_errors": errors / n, "sequences": float(self.sequences)}


class CopyTask(_NTMTask):
    name = "ntm-copy"

    def __init__(self, config: CopyConfig) -> None:
        self.input_size, self.output_size = config.bits + 1, config.bits
        super().__init__(config)

    def sample(self, g: torch.Generator, batch: int, length: int | None = None) -> Episode:
        cfg = self.config
        length = length if length is not None else _randint(g, cfg.min_length, cfg.max_length)
        return copy_episode(g, batch, length, cfg.bits)


class RepeatCopyTask(_NTMTask):
    name = "ntm-repeat-copy"

    def __init__(self, config: RepeatCopyConfig) -> None:
        self.input_size, self.output_size = config.bits + 2, config.bits + 1
        super().__init__(config)

    def sample(self, g: torch.Generator, batch: int, length: int | None = None, repeats: int | None = None) -> Episode:
        cfg = self.config
        length = length if length is not None else _randint(g, cfg.min_length, cfg.max_length)
        repeats = repeats if repeats is not None else _randint(g, cfg.min_repeats, cfg.max_repeats)
        return repeat_copy_episode(g, batch, length, repeats, cfg.bits, (cfg.min_repeats, cfg.max_repeats))


class RecallTask(_NTMTask):
    name = "ntm-recall"

    def __init__(self, config: RecallConfig) -> None:
        self.input_size, self.output_size = config.bits + 2, config.bits
        super().__init__(config)

    def sample(self, g: torch.Generator, batch: int, items: int | None = None) -> Episode:
        cfg = self.config
        items = items if items is not None else _randint(g, cfg.min_items, cfg.max_items)
        return recall_episode(g, batch, items, cfg.item_length, cfg.bits)


TASK_CLASSES: dict[str, tuple[type[NTMTaskConfig], type[_NTMTask]]] = {
    CopyTask.name: (CopyConfig, CopyTask),
    RepeatCopyTask.name: (RepeatCopyConfig, RepeatCopyTask),
    RecallTask.name: (RecallConfig, RecallTask),
}


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _sequences_so_far(run_dir: Path) -> int:
    """Training sequences a resumable run has already seen (0 for a new run)."""
    meta = Path(run_dir) / "last" / "meta.json"
    if not meta.is_file():
        return 0
    try:
        return int(json.loads(meta.read_text(encoding="utf-8"))["metrics"]["sequences"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _train(task: _NTMTask, run_dir: str | Path, *, resume: bool, log) -> TrainResult:
    config = task.config
    torch.manual_seed(config.seed)  # the same initial weights for a given seed
    model = task.build_model()
    if resume:
        task.sequences = _sequences_so_far(Path(run_dir))
    params = sum(p.numel() for p in model.parameters())
    log(f"{task.name}: model {config.model}, {params:,} parameters, batches of {config.batch_size}, "
        f"budget {config.max_minutes} min -> {run_dir}")
    return Trainer(model, task, config, run_dir).fit(resume=resume, log=log)


def train_copy(config: CopyConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    """``seqlab train ntm-copy``."""
    return _train(CopyTask(config), run_dir, resume=resume, log=log)


def train_repeat_copy(config: RepeatCopyConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    """``seqlab train ntm-repeat-copy``."""
    return _train(RepeatCopyTask(config), run_dir, resume=resume, log=log)


def train_recall(config: RecallConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    """``seqlab train ntm-recall``."""
    return _train(RecallTask(config), run_dir, resume=resume, log=log)


# --------------------------------------------------------------------------
# Loading finished runs
# --------------------------------------------------------------------------


class Run(NamedTuple):
    """A finished run: its best model (in eval mode), task, checkpoint metadata and training log."""

    folder: Path
    model: nn.Module
    task: _NTMTask
    meta: dict[str, Any]
    log: list[dict[str, float]]


def read_log(run_dir: Path) -> list[dict[str, float]]:
    """Rows of a run's ``log.csv`` as floats."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def load_run(run_dir: str | Path) -> Run:
    """The best checkpoint of an NTM-task run, rebuilt from the config saved with it."""
    run_dir = Path(run_dir)
    model, task, meta = load_best(run_dir, TASK_CLASSES)
    return Run(run_dir, model, task, meta, read_log(run_dir))


# --------------------------------------------------------------------------
# Report: docs/results/ntm.md
# --------------------------------------------------------------------------


def _command(recipe: str, folder: str, extra: str = "") -> str:
    return f"seqlab train {recipe} --config configs/{recipe}.yaml {extra}--run-dir runs/{folder}"


RUN_COMMANDS = {
    "ntm-copy": _command("ntm-copy", "ntm-copy"),
    "ntm-copy-lstm": _command("ntm-copy", "ntm-copy-lstm", "model=lstm lr=0.001 "),
    "ntm-repeat-copy": _command("ntm-repeat-copy", "ntm-repeat-copy"),
    "ntm-recall": _command("ntm-recall", "ntm-recall"),
    "ntm-recall-lstm": _command("ntm-recall", "ntm-recall-lstm", "model=lstm lr=0.001 "),
}
"""Run folders (under ``--runs``) that ``seqlab report ntm`` needs, and the commands that make them."""

OPTIONAL_RUNS = {"ntm-repeat-copy-lstm": _command("ntm-repeat-copy", "ntm-repeat-copy-lstm", "model=lstm lr=0.001 ")}
"""Run folders the report includes when they exist."""

COPY_LENGTHS = (10, 20, 30, 50, 80, 120)  # generalisation lengths (the paper's Figs. 4-5 go to 120)
REPORT_BATCH = 32  # sequences per generalisation measurement

PAPER = {
    "ntm-copy": "NTM converges to near 0 bits per sequence, far faster than the 3x256 LSTM (Fig. 3)",
    "ntm-repeat-copy": "NTM near 0 bits per sequence, LSTM slower (Fig. 7)",
    "ntm-recall": "LSTM-controller NTM near 0 cost within about 30k episodes; "
    "LSTM does not reach 0 after 1M episodes (Fig. 10)",
    "copy-generalisation": "NTM copies almost perfectly up to length 120 (128 memory slots); "
    "LSTM fails beyond length 20 (Figs. 4-5)",
}
"""What Graves et al. 2014 report, for the "paper" column (figures read qualitatively; the paper gives curves)."""

COPY_TARGET_BITS = 0.1  # the target for the NTM on copy lengths 1-20


def _require_runs(runs_dir: Path, names: dict[str, str], family: str) -> None:
    missing = [name for name in names if not (runs_dir / name / "best" / "meta.json").is_file()]
    if missing:
        commands = "; ".join(names[name] for name in missing)
        raise SeqlabError(
            f"seqlab report {family}: missing run folder(s) {', '.join(str(runs_dir / m) for m in missing)}",
            hint=f"train them first (each stops at its max_minutes budget): {commands}",
        )


def _report_header(title: str, commands: list[str]) -> list[str]:
    """Title, how the page was made, and the commands that reproduce it."""
    commit = git_commit()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"Written by `{commands[-1]}` on {now} (git commit {commit}; {cpu_name()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) for the evaluation). "
        "Every number below comes from that command, except what is marked **paper**: that is what the paper "
        "reports.",
        "",
        "Reproduce:",
        "",
        "```sh",
        *commands,
        "```",
        "",
    ]
    return lines


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _training_row(label: str, run: Run) -> str:
    minutes = run.log[-1]["seconds"] / 60 if run.log else float("nan")
    metrics = run.meta["metrics"]
    last_seen = int(run.log[-1]["sequences"]) if run.log else 0
    return (f"| {label} | {run.task.config.model} | {_params(run.model):,} | {last_seen:,} | "
            f"{int(metrics['sequences']):,} | {minutes:.1f} | {_fmt(metrics['bits'])} | "
            f"{_fmt(metrics['bit_errors'])} |")


@torch.no_grad()
def _scores(run: Run, episode: Episode) -> tuple[float, float]:
    """(bits per sequence, bit error rate) of a run's model on an episode."""
    bits, errors = episode_scores(run.model, episode)
    return float(bits.mean()), float(errors.sum()) / episode.targets.numel()


def _plot_curves(pairs: list[tuple[str, Run]], path: Path, title: str) -> Path:
    lines = [(label, [r["sequences"] / 1000 for r in run.log], [max(r["bits"], 1e-4) for r in run.log])
             for label, run in pairs]
    return line_plot(path, lines, xlabel="training sequences (thousands)",
                     ylabel="cost per sequence (bits), evaluation set", title=title, log_y=True)


def _plot_trace(run: Run, episode: Episode, path: Path, title: str) -> Path:
    """Inputs, outputs, the heads' weightings and the memory over time for the first sequence of ``episode``."""
    model = run.model
    assert isinstance(model, NTM)
    x = episode.inputs[:, :1]
    logits, trace = model.trace(x)
    t_out = episode.targets.shape[0]
    written = trace.write_weights[:, 0].sum((0, 1)).gt(0.05).nonzero()  # slots a write head visited
    used = int(written.max()) + 3 if written.numel() else model.config.memory_slots
    used = min(max(used, 8), 48, model.config.memory_slots)  # a readable number of slots
    outputs = torch.sigmoid(logits[:, 0])
    outputs[: x.shape[0] - t_out] = 0.0  # only the answer phase is an output
    panels = [
        ("inputs", x[:, 0].T, "channel", "Greys"),
        ("outputs", outputs.T, "channel", "Greys"),
        ("write weighting", trace.write_weights[:, 0].sum(1)[:, :used].T, "slot", "Blues"),
        ("read weighting", trace.read_weights[:, 0].sum(1)[:, :used].T, "slot", "Reds"),
        ("adds (write head 1)", trace.adds[:, 0, 0].T, "cell", "coolwarm"),
        (f"memory, slots 0-{used - 1} (each column: all rows, stacked)", trace.memory[:, 0, :used].flatten(1).T,
         "slot x cell", "coolwarm"),
    ]
    plt = pyplot()
    heights = [1.0, 1.0, 1.4, 1.4, 1.0, 2.2]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.0, 11.0), gridspec_kw={"height_ratios": heights}, sharex=True)
    for ax, (name, image, ylabel, cmap) in zip(axes, panels):
        data = image.detach().numpy()
        kwargs = {"vmin": -1.0, "vmax": 1.0} if cmap == "coolwarm" else {"vmin": 0.0, "vmax": 1.0}
        ax.imshow(data, aspect="auto", cmap=cmap, interpolation="nearest", **kwargs)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1].set_xlabel("time step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_ntm(runs_dir: Path, out_dir: Path) -> list[Path]:
    """``seqlab report ntm``: evaluate the finished NTM/LSTM runs, write ``ntm.md`` and its plots.

    Needs these run folders under ``runs_dir`` (made by the commands beside them):

        runs/ntm-copy              seqlab train ntm-copy --config configs/ntm-copy.yaml --run-dir runs/ntm-copy
        runs/ntm-copy-lstm         ... ntm-copy ... model=lstm lr=0.001 --run-dir runs/ntm-copy-lstm
        runs/ntm-repeat-copy       seqlab train ntm-repeat-copy --config configs/ntm-repeat-copy.yaml ...
        runs/ntm-recall            seqlab train ntm-recall --config configs/ntm-recall.yaml --run-dir runs/ntm-recall
        runs/ntm-recall-lstm       ... ntm-recall ... model=lstm lr=0.001 --run-dir runs/ntm-recall-lstm

    and includes ``runs/ntm-repeat-copy-lstm`` when it exists (exact commands:
    :data:`RUN_COMMANDS`, :data:`OPTIONAL_RUNS`).
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    _require_runs(runs_dir, RUN_COMMANDS, "ntm")
    names = list(RUN_COMMANDS) + [n for n in OPTIONAL_RUNS if (runs_dir / n / "best" / "meta.json").is_file()]
    runs = {name: load_run(runs_dir / name) for name in names}
    for name, run in runs.items():
        expected_task = name.removesuffix("-lstm")
        expected_model = "lstm" if name.endswith("-lstm") else "ntm"
        if run.meta["task"] != expected_task or run.task.config.model != expected_model:
            raise SeqlabError(
                f"{runs_dir / name} holds a {run.meta['task']} run with model={run.task.config.model}, "
                f"expected {expected_task} with model={expected_model}",
                hint=f"retrain it: {RUN_COMMANDS.get(name) or OPTIONAL_RUNS[name]}",
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    commands = [*RUN_COMMANDS.values(), *(OPTIONAL_RUNS[n] for n in names if n in OPTIONAL_RUNS),
                f"seqlab report ntm --runs {runs_dir} --out {out_dir}"]
    lines = _report_header("Neural Turing Machine vs LSTM (Graves et al. 2014)", commands)

    lines += [
        "## Training",
        "",
        "Cost = binary cross-entropy of the answer in bits, summed over a sequence, on fixed evaluation episodes "
        f"({runs['ntm-copy'].task.config.eval_batches} x {runs['ntm-copy'].task.config.eval_batch_size} sequences "
        "from the training distribution); the best epoch's checkpoint is the one evaluated below.",
        "",
        "| run | model | parameters | sequences seen | seen at best | minutes | bits per sequence "
        "| bit errors per sequence |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_training_row(name, run) for name, run in runs.items()]
    lines += ["", "**paper** (Graves et al. 2014):", ""]
    lines += [f"- {task}: {text}" for task, text in PAPER.items() if task != "copy-generalisation"]
    copy_bits = runs["ntm-copy"].meta["metrics"]["bits"]
    verdict = "met" if copy_bits < COPY_TARGET_BITS else "not met"
    lines += ["", f"Target: NTM copy below {COPY_TARGET_BITS} bits per sequence on lengths 1-20: "
              f"{_fmt(copy_bits)} ({verdict}).", ""]

    # Copy generalisation, Figs. 4-5.
    lines += [
        "## Copy: generalisation to longer sequences",
        "",
        f"Bit-error rate (wrong output bits / all output bits) on {REPORT_BATCH} fresh sequences per length; "
        "training lengths were 1-20.",
        "",
        "| length | NTM bit-error rate | NTM bits per sequence | LSTM bit-error rate | LSTM bits per sequence |",
        "|---:|---:|---:|---:|---:|",
    ]
    ntm_copy, lstm_copy = runs["ntm-copy"], runs["ntm-copy-lstm"]
    for length in COPY_LENGTHS:
        g = torch.Generator().manual_seed(EVAL_SEED + length)
        episode = ntm_copy.task.sample(g, REPORT_BATCH, length=length)
        nb, ne = _scores(ntm_copy, episode)
        lb, le = _scores(lstm_copy, episode)
        lines.append(f"| {length} | {100 * ne:.2f}% | {_fmt(nb)} | {100 * le:.2f}% | {_fmt(lb)} |")
    lines += ["", f"**paper**: {PAPER['copy-generalisation']}.", ""]

    # Associative recall, Fig. 11: more items than in training.
    recall, recall_lstm = runs["ntm-recall"], runs["ntm-recall-lstm"]
    rc = recall.task.config
    lines += [
        "## Associative recall: more items than in training",
        "",
        f"Bits per sequence on {REPORT_BATCH} fresh sequences per item count; training used {rc.min_items}-"
        f"{rc.max_items} items.",
        "",
        "| items | NTM bits per sequence | NTM bit-error rate | LSTM bits per sequence | LSTM bit-error rate |",
        "|---:|---:|---:|---:|---:|",
    ]
    for items in sorted({rc.max_items, rc.max_items + 3, 2 * rc.max_items}):
        g = torch.Generator().manual_seed(EVAL_SEED + 100 + items)
        episode = recall.task.sample(g, REPORT_BATCH, items=items)
        nb, ne = _scores(recall, episode)
        lb, le = _scores(recall_lstm, episode)
        lines.append(f"| {items} | {_fmt(nb)} | {100 * ne:.2f}% | {_fmt(lb)} | {100 * le:.2f}% |")
    lines += ["", "**paper** (Fig. 11): the NTM's cost stays low up to 12 items (trained on up to 6), "
              "the LSTM's grows with the item count.", ""]

    # Repeat copy, Fig. 8: longer sequences and more copies.
    repeat = runs["ntm-repeat-copy"]
    pc = repeat.task.config
    cases = [(pc.max_length, pc.max_repeats), (pc.max_length, 2 * pc.max_repeats), (2 * pc.max_length, pc.max_repeats)]
    repeat_runs = [("NTM", repeat)]
    if "ntm-repeat-copy-lstm" in runs:
        repeat_runs.append(("LSTM", runs["ntm-repeat-copy-lstm"]))
    lines += [
        "## Repeat copy: longer sequences and more copies",
        "",
        f"{REPORT_BATCH} fresh sequences per case; training used lengths {pc.min_length}-{pc.max_length} "
        f"and {pc.min_repeats}-{pc.max_repeats} copies.",
        "",
        "| length | copies | " + " | ".join(f"{m} bits per sequence | {m} bit-error rate" for m, _ in repeat_runs)
        + " |",
        "|---:|---:|" + "---:|---:|" * len(repeat_runs),
    ]
    for length, repeats in cases:
        g = torch.Generator().manual_seed(EVAL_SEED + 1000 * length + repeats)
        episode = repeat.task.sample(g, REPORT_BATCH, length=length, repeats=repeats)
        cells = []
        for _, run in repeat_runs:
            b, e = _scores(run, episode)
            cells.append(f"{_fmt(b)} | {100 * e:.2f}%")
        lines.append(f"| {length} | {repeats} | " + " | ".join(cells) + " |")
    lines += ["", "**paper** (Fig. 8): the NTM generalises to longer sequences and to more copies, but "
              "puts the end marker at the wrong place beyond the trained number of copies.", ""]

    # Plots.
    plots = [
        (_plot_curves([("NTM", ntm_copy), ("LSTM", lstm_copy)], out_dir / "ntm_copy_learning.png",
                      "copy: cost on lengths 1-20"), "Learning curves, copy (paper Fig. 3)"),
        (_plot_curves([("NTM", recall), ("LSTM", recall_lstm)], out_dir / "ntm_recall_learning.png",
                      "associative recall"), "Learning curves, associative recall (paper Fig. 10)"),
        (_plot_curves(repeat_runs, out_dir / "ntm_repeat_copy_learning.png", "repeat copy"),
         "Learning curves, repeat copy (paper Fig. 7)"),
    ]
    g = torch.Generator().manual_seed(EVAL_SEED + 7)
    plots += [
        (_plot_trace(ntm_copy, ntm_copy.task.sample(g, 1, length=20), out_dir / "ntm_copy_memory.png",
                     "NTM copy, length 20"), "NTM copy, length 20: weightings and memory over time (paper Fig. 6)"),
        (_plot_trace(ntm_copy, ntm_copy.task.sample(g, 1, length=50), out_dir / "ntm_copy_memory_50.png",
                     "NTM copy, length 50 (longer than in training)"),
         "NTM copy, length 50 (beyond the training lengths)"),
        (_plot_trace(repeat, repeat.task.sample(g, 1, length=5, repeats=4), out_dir / "ntm_repeat_copy_memory.png",
                     "NTM repeat copy, length 5, 4 copies"), "NTM repeat copy (paper Fig. 9)"),
        (_plot_trace(recall, recall.task.sample(g, 1, items=6), out_dir / "ntm_recall_memory.png",
                     "NTM associative recall, 6 items"), "NTM associative recall (paper Fig. 12)"),
    ]
    lines += ["## Plots", ""]
    for path, caption in plots:
        files.append(path)
        lines += [f"### {caption}", "", f"![{caption}]({path.name})", ""]
    lines += [
        "In the weighting plots each column is one time step: the write weighting moves one slot per input "
        "vector, and the read weighting retraces it during the answer.  The memory panel stacks the used "
        "slots' rows (20 cells each) into one column per step.",
        "",
        "Departures from the paper: Adam with gradient-norm clipping (the paper: RMSProp with momentum), "
        "minibatches of sequences that share one length, a linear learning-rate decay over a fixed time budget, "
        "and far fewer training sequences than the paper's curves show for the LSTM.",
        "",
    ]
    md = out_dir / "ntm.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return [md, *files]
