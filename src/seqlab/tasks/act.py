"""The Adaptive Computation Time tasks of Graves 2016 (arXiv:1603.08983, sec. 3), with and without ACT.

Recipes (``seqlab train NAME``):

* ``act-parity`` (sec. 3.1): one input vector of 64 entries, a random
  number (1-64) of them set to +1 or -1 and the rest 0; the target is 1
  when the number of +1 entries is odd.  A simple RNN of 128 tanh units and
  one sigmoid output, binary cross-entropy, batches of 128 — the paper's
  network.  The sequence has one step: without ACT the RNN gets one
  update, with ACT it ponders as long as its halting unit says.
* ``act-addition`` (sec. 3.3): 1-5 numbers of 1-5 decimal digits, each a
  50-wide input (one-hot digits, most significant first, zero padded);
  from the second input on, the target is the running sum as 6 digit
  classifications of 11 classes (10 digits and an "end of number" marker
  that fills the places after the last digit).  An LSTM (the paper: one
  layer of 512 cells; ``hidden_size`` here) with a softmax per digit.

``act=false`` trains the same network without ACT (one cell step per
input).  ``tau`` is the time penalty of eq. 15.  The sweep option
``sweep="none,0.001,0.01,0.1"`` trains one run per entry, into
``<run-dir>-noact`` and ``<run-dir>-tau<value>``; ``seqlab report act``
(:func:`report_act`) reads exactly those folders.

The metric is the paper's sequence error rate: the fraction of sequences
with any wrong output (a 1-number addition sequence has no target and
counts as right).  Departures from the paper, for a CPU budget: far fewer
iterations (the paper trains 1M), our learning rate and gradient clipping,
and a time budget per run.
"""

from __future__ import annotations

import abc
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SeqlabError
from ..memory.act import ACT, Ponder
from ..nn import CELLS, Recurrent
from ..plot import line_plot, pyplot
from ..train import TrainConfig, Trainer, TrainResult
from ._sampled import SampledTask, load_best
from .ntm import _report_header, read_log

__all__ = [
    "ACTTaskConfig",
    "ParityConfig",
    "AdditionConfig",
    "ACTModel",
    "parity_batch",
    "addition_batch",
    "ParityTask",
    "AdditionTask",
    "train_parity",
    "train_addition",
    "sweep_folders",
    "report_act",
]

EVAL_SEED = 20160329  # the evaluation set is the same for every run
DIGITS, SUM_DIGITS, CLASSES = 5, 6, 11  # addition: input digits per number, output digits, classes per digit
END = 10  # addition: the "number is complete" class


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ACTTaskConfig(TrainConfig):
    """Settings shared by the ACT recipes."""

    act: bool = True  # false: the same network with one step per input
    tau: float = 0.001  # time penalty τ of eq. 15
    max_steps: int = 100  # M, the most ponder steps per input
    epsilon: float = 0.01  # ε of eq. 8
    cell: str = "rnn_tanh"  # any cell of seqlab.nn.CELLS
    hidden_size: int = 128
    batch_size: int = 128
    batches_per_epoch: int = 100  # fresh batches between two evaluations
    eval_sequences: int = 2000  # size of the fixed evaluation set
    sweep: str | None = None  # e.g. "none,0.001,0.01,0.1": one run per entry ("none": without ACT)

    epochs: int = 100000  # the time budget ends a run
    lr: float = 1e-3
    clip_norm: float | None = 5.0
    schedule: str = "linear"
    patience: int = 100
    max_minutes: float | None = 12.0

    def validate(self) -> None:
        TrainConfig.validate(self)
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; valid: {', '.join(CELLS)}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")
        if self.max_steps < 1 or not 0 <= self.epsilon < 1:
            raise ValueError("need max_steps >= 1 and 0 <= epsilon < 1")
        for name in ("hidden_size", "batch_size", "batches_per_epoch", "eval_sequences"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sweep is not None:
            sweep_runs(self)  # raises ValueError on a malformed list


@dataclass(frozen=True)
class ParityConfig(ACTTaskConfig):
    """Parity (sec. 3.1): 64-entry vectors, a 128-unit tanh RNN."""

    bits: int = 64

    def validate(self) -> None:
        ACTTaskConfig.validate(self)
        if self.bits < 1:
            raise ValueError(f"bits must be >= 1, got {self.bits}")


@dataclass(frozen=True)
class AdditionConfig(ACTTaskConfig):
    """Addition (sec. 3.3): 1-5 numbers of 1-5 digits, an LSTM."""

    cell: str = "lstm"
    hidden_size: int = 512  # the paper's LSTM
    batch_size: int = 32
    max_numbers: int = 5  # sequence length: 1..max_numbers inputs

    def validate(self) -> None:
        ACTTaskConfig.validate(self)
        if self.max_numbers < 1:
            raise ValueError(f"max_numbers must be >= 1, got {self.max_numbers}")


def sweep_runs(config: ACTTaskConfig) -> list[tuple[str, ACTTaskConfig]]:
    """The sweep as ``(folder suffix, config)`` pairs: ``-noact`` for "none", ``-tau<value>`` otherwise."""
    runs = []
    for token in (config.sweep or "").split(","):
        token = token.strip().lower()
        if token == "none":
            runs.append(("-noact", replace(config, act=False, sweep=None)))
            continue
        try:
            tau = float(token)
        except ValueError:
            raise ValueError(f"sweep entries must be 'none' or a number (tau), got {token!r}") from None
        if tau < 0:
            raise ValueError(f"sweep: tau must be >= 0, got {tau}")
        runs.append((f"-tau{tau:g}", replace(config, act=True, tau=tau, sweep=None)))
    if not runs:
        raise ValueError("sweep is empty; give e.g. sweep=none,0.001,0.01")
    return runs


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


class Batch(NamedTuple):
    inputs: Tensor  # (T, B, I)
    targets: Tensor  # parity: (1, B) floats; addition: (T - 1, B, 6) class indices


def parity_batch(g: torch.Generator, batch: int, bits: int = 64) -> Batch:
    """Sec. 3.1: ``1..bits`` random entries set to ±1, the rest 0; target: odd number of +1 entries."""
    set_count = torch.randint(1, bits + 1, (batch, 1), generator=g)
    order = torch.rand(batch, bits, generator=g).argsort(dim=1)
    chosen = order < set_count  # (B, bits): a random subset of set_count entries
    signs = torch.randint(0, 2, (batch, bits), generator=g).float() * 2 - 1
    x = torch.where(chosen, signs, torch.zeros_like(signs))
    target = (x == 1).sum(1).remainder(2).float()
    return Batch(x.unsqueeze(0), target.unsqueeze(0))


def _sum_classes(total: Tensor) -> Tensor:
    """Targets for sums ``(B,)``: their digits, most significant first, then END in the places left, ``(B, 6)``."""
    length = 1 + sum((total >= 10**k).long() for k in range(1, SUM_DIGITS))  # (B,) digits of each sum
    exponent = length.unsqueeze(1) - 1 - torch.arange(SUM_DIGITS)  # (B, 6): power of ten at each place
    digit = (total.unsqueeze(1) // 10 ** exponent.clamp_min(0)) % 10
    return torch.where(exponent >= 0, digit, torch.full_like(digit, END))


def addition_batch(g: torch.Generator, batch: int, numbers: int) -> Batch:
    """Sec. 3.3: ``numbers`` inputs of 1-5 random digits; targets: running sums from the second input on."""
    lengths = torch.randint(1, DIGITS + 1, (numbers, batch), generator=g)  # digits per number
    raw = torch.randint(0, 10, (numbers, batch, DIGITS), generator=g)
    place = torch.arange(DIGITS)
    raw = torch.where(place < lengths.unsqueeze(-1), raw, torch.zeros_like(raw))  # digit i exists if i < length
    x = F.one_hot(raw, 10).float() * (place < lengths.unsqueeze(-1)).unsqueeze(-1).float()  # (T, B, 5, 10)
    # The value of each number: its first `length` digits, most significant first.
    weights = 10 ** (lengths.unsqueeze(-1) - 1 - place).clamp_min(0)
    values = (raw * weights * (place < lengths.unsqueeze(-1))).sum(-1)  # (T, B)
    sums = values.cumsum(0)[1:]  # (T - 1, B): no target for the first input
    y = torch.stack([_sum_classes(s) for s in sums]) if numbers > 1 else torch.zeros(0, batch, SUM_DIGITS).long()
    return Batch(x.flatten(2), y)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


class ACTModel(nn.Module):
    """A recurrent layer (with or without ACT) and a linear output: ``forward(x (T, B, I)) -> (logits, ponder)``.

    Without ACT the ponder statistics are those of one step per input
    (``steps = 1``, ``cost = 0``: there is nothing to penalise).
    """

    def __init__(self, input_size: int, output_size: int, config: ACTTaskConfig) -> None:
        super().__init__()
        self.use_act = config.act
        if config.act:
            self.rnn: nn.Module = ACT(config.cell, input_size, config.hidden_size,
                                      max_steps=config.max_steps, epsilon=config.epsilon)
        else:
            self.rnn = Recurrent(config.cell, input_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, output_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Ponder]:
        if self.use_act:
            h, _, ponder = self.rnn(x)
        else:
            h, _ = self.rnn(x)
            ones = x.new_ones(x.shape[:2])
            ponder = Ponder(torch.zeros_like(ones), ones)
        return self.output(h), ponder


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


class _ACTTask(SampledTask):
    metric = "sequence_error"
    eval_seed = EVAL_SEED

    def _eval_set(self, g: torch.Generator) -> list[Batch]:
        """The fixed evaluation batches: ``eval_sequences`` from the training distribution."""
        total, size = self.config.eval_sequences, 500
        return [self.sample(g, min(size, total - k)) for k in range(0, total, size)]

    @abc.abstractmethod
    def task_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Summed loss of the batch (without the ponder cost)."""

    @abc.abstractmethod
    def wrong(self, logits: Tensor, batch: Batch) -> Tensor:
        """``(B,)`` booleans: sequences with any wrong output."""

    def build_model(self) -> ACTModel:
        return ACTModel(self.input_size, self.output_size, self.config)

    def loss(self, model: ACTModel, batch: Batch) -> tuple[Tensor, int]:
        logits, ponder = model(batch.inputs)
        n = batch.inputs.shape[1]
        self.sequences += n
        loss = self.task_loss(logits, batch)
        if self.config.act:
            loss = loss + self.config.tau * ponder.cost.sum()  # eq. 15, summed over the batch
        return loss, n

    @torch.no_grad()
    def evaluate(self, model: ACTModel) -> dict[str, float]:
        wrong, n, steps, inputs = 0.0, 0, 0.0, 0
        for batch in self.eval_set:
            logits, ponder = model(batch.inputs)
            wrong += float(self.wrong(logits, batch).sum())
            n += batch.inputs.shape[1]
            steps += float(ponder.steps.sum())
            inputs += ponder.steps.numel()
        return {"sequence_error": wrong / n, "ponder": steps / inputs, "sequences": float(self.sequences)}


class ParityTask(_ACTTask):
    name = "act-parity"

    def __init__(self, config: ParityConfig) -> None:
        self.input_size, self.output_size = config.bits, 1
        super().__init__(config)

    def sample(self, g: torch.Generator, batch: int) -> Batch:
        return parity_batch(g, batch, self.config.bits)

    def task_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), batch.targets, reduction="sum")

    def wrong(self, logits: Tensor, batch: Batch) -> Tensor:
        return ((logits.squeeze(-1) > 0).float() != batch.targets).any(0)


class AdditionTask(_ACTTask):
    name = "act-addition"

    def __init__(self, config: AdditionConfig) -> None:
        self.input_size, self.output_size = DIGITS * 10, SUM_DIGITS * CLASSES
        super().__init__(config)

    def _eval_set(self, g: torch.Generator) -> list[Batch]:
        """Equal shares of every sequence length (the training distribution draws lengths uniformly)."""
        lengths = self.config.max_numbers
        share = -(-self.config.eval_sequences // lengths)
        return [self.sample(g, share, numbers=n) for n in range(1, lengths + 1)]

    def sample(self, g: torch.Generator, batch: int, numbers: int | None = None) -> Batch:
        if numbers is None:
            numbers = int(torch.randint(1, self.config.max_numbers + 1, (1,), generator=g))
        return addition_batch(g, batch, numbers)

    def _digit_logits(self, logits: Tensor) -> Tensor:
        """Logits of the steps with a target, one softmax per digit: ``(T - 1, B, 6, 11)``."""
        return logits[1:].unflatten(-1, (SUM_DIGITS, CLASSES))

    def task_loss(self, logits: Tensor, batch: Batch) -> Tensor:
        scores = self._digit_logits(logits)
        # A 1-number sequence has no target: the sum over an empty set is 0 but keeps the graph.
        return F.cross_entropy(scores.reshape(-1, CLASSES), batch.targets.reshape(-1), reduction="sum") \
            if batch.targets.numel() else logits.sum() * 0.0

    def wrong(self, logits: Tensor, batch: Batch) -> Tensor:
        if not batch.targets.numel():
            return torch.zeros(batch.inputs.shape[1], dtype=torch.bool)
        return (self._digit_logits(logits).argmax(-1) != batch.targets).any(-1).any(0)


TASK_CLASSES: dict[str, tuple[type[ACTTaskConfig], type[_ACTTask]]] = {
    ParityTask.name: (ParityConfig, ParityTask),
    AdditionTask.name: (AdditionConfig, AdditionTask),
}


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _sequences_so_far(run_dir: Path) -> int:
    meta = run_dir / "last" / "meta.json"
    if not meta.is_file():
        return 0
    try:
        return int(json.loads(meta.read_text(encoding="utf-8"))["metrics"]["sequences"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _train_one(task: _ACTTask, run_dir: Path, *, resume: bool, log) -> TrainResult:
    config = task.config
    torch.manual_seed(config.seed)
    model = task.build_model()
    if resume:
        task.sequences = _sequences_so_far(run_dir)
    mode = f"ACT tau={config.tau:g}" if config.act else "no ACT"
    log(f"{task.name} ({mode}): {config.cell} {config.hidden_size}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, budget {config.max_minutes} min -> {run_dir}")
    return Trainer(model, task, config, run_dir).fit(resume=resume, log=log)


def _train(task_cls: type[_ACTTask], config: ACTTaskConfig, run_dir: str | Path, *, resume: bool, log) -> TrainResult:
    run_dir = Path(run_dir)
    if config.sweep is None:
        return _train_one(task_cls(config), run_dir, resume=resume, log=log)
    results = []
    for suffix, one in sweep_runs(config):
        folder = run_dir.with_name(run_dir.name + suffix)
        results.append((folder, _train_one(task_cls(one), folder, resume=resume, log=log)))
    log("sweep finished:")
    for folder, result in results:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in result.best_metrics.items())
        log(f"  {folder}: {shown}")
    return results[-1][1]


def train_parity(config: ParityConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    """``seqlab train act-parity`` (with ``sweep=...``: one run per entry; returns the last one's result)."""
    return _train(ParityTask, config, run_dir, resume=resume, log=log)


def train_addition(config: AdditionConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    """``seqlab train act-addition`` (with ``sweep=...``: one run per entry; returns the last one's result)."""
    return _train(AdditionTask, config, run_dir, resume=resume, log=log)


# --------------------------------------------------------------------------
# Report: docs/results/act.md
# --------------------------------------------------------------------------

SWEEP_COMMANDS = {
    "act-parity": "seqlab train act-parity --config configs/act-parity.yaml --run-dir runs/act-parity",
    "act-addition": "seqlab train act-addition --config configs/act-addition.yaml --run-dir runs/act-addition",
}
"""The commands whose sweeps make the run folders ``seqlab report act`` reads (``runs/<name>-noact``,
``runs/<name>-tau<value>``)."""

OPTIONAL_SWEEPS = {
    "act-parity16": ("act-parity",
                     "seqlab train act-parity --config configs/act-parity16.yaml --run-dir runs/act-parity16"),
}
"""Sweeps the report adds when their folders exist: name -> (recipe, command).  ``act-parity16`` is the
parity task with 16 entries, small enough for the iterations a CPU run affords."""

PAPER = {
    "act-parity": "after 1M iterations, with ACT and tau <= 0.03 the sequence error is below 5%; without ACT "
    "it stays near 40% (sec. 3.1)",
    "act-addition": "ACT lowers the sequence error well below that of the same LSTM without ACT (sec. 3.3)",
    "act-parity16": "not in the paper, which uses 64 entries; its claim for parity is that ACT with a small tau "
    "solves the task and the same RNN without ACT does not (sec. 3.1)",
}
"""What Graves 2016 reports, for the "paper" lines."""


class _Run(NamedTuple):
    folder: Path
    label: str
    tau: float | None  # None: without ACT
    model: ACTModel
    task: _ACTTask
    meta: dict[str, Any]
    log: list[dict[str, float]]


def sweep_folders(runs_dir: Path, name: str) -> list[Path]:
    """The finished sweep runs of a recipe: ``<name>-noact`` first, then ``<name>-tau<value>`` by tau."""
    runs_dir = Path(runs_dir)
    found = []
    for folder in runs_dir.glob(f"{name}-*"):
        if not (folder / "best" / "meta.json").is_file():
            continue
        suffix = folder.name[len(name) + 1 :]
        if suffix == "noact":
            found.append((-1.0, folder))
        elif suffix.startswith("tau"):
            try:
                found.append((float(suffix[3:]), folder))
            except ValueError:
                continue
    return [folder for _, folder in sorted(found)]


def _load(folder: Path) -> _Run:
    model, task, meta = load_best(folder, TASK_CLASSES)
    config = task.config
    label = f"ACT, tau={config.tau:g}" if config.act else "no ACT"
    return _Run(folder, label, config.tau if config.act else None, model, task, meta, read_log(folder))


def _complete(found: list[Path]) -> bool:
    """Whether a sweep has its run without ACT and at least one with ACT."""
    return any(f.name.endswith("-noact") for f in found) and any("-tau" in f.name for f in found)


def _require(runs_dir: Path) -> dict[str, list[_Run]]:
    """The sweep runs of both recipes (and of the optional sweeps that are complete); a SeqlabError naming the
    commands when a required sweep is incomplete."""
    folders = {name: sweep_folders(runs_dir, name) for name in SWEEP_COMMANDS}
    problems = [
        f"{SWEEP_COMMANDS[name]}  (needs {runs_dir}/{name}-noact and at least one {runs_dir}/{name}-tau<value>)"
        for name, found in folders.items()
        if not _complete(found)
    ]
    if problems:
        raise SeqlabError("seqlab report act: missing run folders", hint="train them first: " + "; ".join(problems))
    recipes = {name: name for name in SWEEP_COMMANDS}
    for name, (recipe, _) in OPTIONAL_SWEEPS.items():
        found = sweep_folders(runs_dir, name)
        if _complete(found):
            folders[name], recipes[name] = found, recipe
    runs = {name: [_load(f) for f in found] for name, found in folders.items()}
    for name, found in runs.items():
        for run in found:
            if run.meta["task"] != recipes[name]:
                raise SeqlabError(f"{run.folder} holds a {run.meta['task']} run, expected {recipes[name]}")
    return runs


def _title(config: ACTTaskConfig) -> str:
    if isinstance(config, ParityConfig):
        return f"Parity ({config.bits}-entry vectors)"
    return f"Addition (1-{config.max_numbers} numbers of 1-{DIGITS} digits)"


def _iterations(run: _Run) -> int:
    seen = int(run.log[-1]["sequences"]) if run.log else 0
    return seen // run.task.config.batch_size


def _plot_sweep(runs: list[_Run], path: Path, title: str) -> Path:
    """Sequence error against mean ponder time, one point per run (the paper's Fig. 5/8 layout)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    labels = [r.label.replace("ACT, ", "") for r in runs]
    errors = [100 * r.meta["metrics"]["sequence_error"] for r in runs]
    ponders = [r.meta["metrics"]["ponder"] for r in runs]
    colors = ["tab:gray" if r.tau is None else "tab:blue" for r in runs]
    axes[0].bar(range(len(runs)), errors, color=colors)
    axes[0].set_xticks(range(len(runs)), labels, rotation=30, ha="right")
    axes[0].set_ylabel("sequence error (%)")
    axes[1].bar(range(len(runs)), ponders, color=colors)
    axes[1].set_xticks(range(len(runs)), labels, rotation=30, ha="right")
    axes[1].set_ylabel("ponder time per input (steps)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_curves(runs: list[_Run], path: Path, title: str) -> Path:
    lines = [(run.label, [r["sequences"] / run.task.config.batch_size / 1000 for r in run.log],
              [100 * r["sequence_error"] for r in run.log]) for run in runs]
    return line_plot(path, lines, xlabel="iterations (thousands)", ylabel="sequence error (%), evaluation set",
                     title=title)


@torch.no_grad()
def _parity_ponder_by_count(run: _Run, bits: int) -> tuple[list[int], list[float]]:
    """Mean ponder time against the number of non-zero entries (the parity problem's difficulty)."""
    g = torch.Generator().manual_seed(EVAL_SEED + 1)
    batch = parity_batch(g, 4000, bits)
    _, ponder = run.model(batch.inputs)
    counts = batch.inputs[0].ne(0).sum(1)
    xs, ys = [], []
    for k in range(1, bits + 1):
        chosen = counts == k
        if chosen.any():
            xs.append(k)
            ys.append(float(ponder.steps[0][chosen].mean()))
    return xs, ys


@torch.no_grad()
def _addition_ponder(run: _Run, numbers: int) -> list[float]:
    """Mean ponder time at each input position of ``numbers``-long addition sequences."""
    g = torch.Generator().manual_seed(EVAL_SEED + 2)
    batch = run.task.sample(g, 1000, numbers=numbers)
    _, ponder = run.model(batch.inputs)
    return [float(v) for v in ponder.steps.mean(1)]


@torch.no_grad()
def _addition_example(run: _Run) -> tuple[list[str], list[int]]:
    """One 5-number sequence written out, with the ponder time of each input."""
    g = torch.Generator().manual_seed(EVAL_SEED + 3)
    batch = run.task.sample(g, 1, numbers=run.task.config.max_numbers)
    _, ponder = run.model(batch.inputs)
    numbers = []
    for x in batch.inputs[:, 0].view(-1, DIGITS, 10):
        digits = [str(int(d.argmax())) for d in x if d.sum() > 0]
        numbers.append("".join(digits))
    return numbers, [int(v) for v in ponder.steps[:, 0]]


def report_act(runs_dir: Path, out_dir: Path) -> list[Path]:
    """``seqlab report act``: parity and addition with and without ACT, per tau of the sweeps -> ``act.md``.

    Needs the sweep folders under ``runs_dir``: ``act-parity-noact`` and
    ``act-parity-tau<value>`` (at least one), the same for ``act-addition``.
    The configs' sweeps make them:

        seqlab train act-parity --config configs/act-parity.yaml --run-dir runs/act-parity
        seqlab train act-addition --config configs/act-addition.yaml --run-dir runs/act-addition

    Another tau can be added later; the report picks up every ``-tau<value>`` folder:

        seqlab train act-parity --config configs/act-parity.yaml sweep=null tau=0.005 --run-dir runs/act-parity-tau0.005
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    runs = _require(runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optional = [command for name, (_, command) in OPTIONAL_SWEEPS.items() if name in runs]
    commands = [*SWEEP_COMMANDS.values(), *optional, f"seqlab report act --runs {runs_dir} --out {out_dir}"]
    lines = _report_header("Adaptive Computation Time (Graves 2016)", commands)
    lines += [
        "Sequence error = fraction of the fixed evaluation sequences with any wrong output; ponder time = "
        "mean number of cell steps N(t) per input (1 without ACT).  Each run is its best epoch's checkpoint.",
        "",
    ]
    files: list[Path] = []
    titles: dict[str, str] = {}
    for name, found in runs.items():
        cfg = found[0].task.config
        titles[name] = _title(cfg)
        lines += [
            f"## {titles[name]}",
            "",
            f"Network: {cfg.cell} with {cfg.hidden_size} units, at most {cfg.max_steps} ponder steps per input (M) "
            f"with ACT, batches of {cfg.batch_size}; evaluation on "
            f"{cfg.eval_sequences} fixed sequences.  Each run trained "
            + (f"for at most {cfg.max_minutes:g} minutes " if cfg.max_minutes else "")
            + f"on {cfg.threads or 'the default number of'} torch thread(s).",
            "",
            "| run | tau | iterations | minutes | sequence error | ponder time per input |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for run in found:
            m = run.meta["metrics"]
            minutes = run.log[-1]["seconds"] / 60 if run.log else math.nan
            tau = "-" if run.tau is None else f"{run.tau:g}"
            lines.append(f"| {run.folder.name} | {tau} | {_iterations(run):,} | {minutes:.1f} | "
                         f"{100 * m['sequence_error']:.2f}% | {m['ponder']:.2f} |")
        lines += ["", f"**paper** (Graves 2016): {PAPER[name]}.", ""]
        slug = name.replace("-", "_")
        files.append(_plot_sweep(found, out_dir / f"{slug}_sweep.png", titles[name]))
        files.append(_plot_curves(found, out_dir / f"{slug}_learning.png", titles[name]))
        lines += [f"![{name}: error and ponder time per run]({slug}_sweep.png)", "",
                  f"![{name}: learning curves]({slug}_learning.png)", ""]

    # Ponder time along the input: parity by difficulty, addition by position in the sequence.
    ponder_lines = ["## Ponder time along the sequence", ""]
    for name in (n for n in runs if isinstance(runs[n][0].task, ParityTask)):
        act_parity = [r for r in runs[name] if r.tau is not None]
        curves = [(run.label, *_parity_ponder_by_count(run, run.task.config.bits)) for run in act_parity]
        png = f"{name.replace('-', '_')}_ponder.png"
        files.append(line_plot(out_dir / png, curves, xlabel="non-zero entries in the input vector",
                               ylabel="ponder time (steps)", title=f"{titles[name]}: ponder time against difficulty"))
        ponder_lines += [f"![{titles[name]}: ponder time against the number of non-zero entries]({png})", ""]
    act_addition = [r for r in runs["act-addition"] if r.tau is not None]
    numbers = act_addition[0].task.config.max_numbers
    steps = range(1, numbers + 1)
    curves = [(run.label, steps, _addition_ponder(run, numbers)) for run in act_addition]
    files.append(line_plot(out_dir / "act_addition_ponder.png", curves, xlabel="input step (number in the sequence)",
                           ylabel="mean ponder time (steps)", xticks=steps, marker="o",
                           title=f"addition: ponder time along {numbers}-number sequences"))

    example_numbers, example_steps = _addition_example(act_addition[0])
    lines += [
        *ponder_lines,
        "![addition: ponder time per input step](act_addition_ponder.png)",
        "",
        f"One addition sequence, {act_addition[0].label}: " + ", ".join(
            f"{n} ({s} step{'s' if s != 1 else ''})" for n, s in zip(example_numbers, example_steps)) + ".",
        "",
        "**paper**: a lower tau buys more pondering and a lower error (parity, sec. 3.1).",
        "",
        "Departures from the paper: far fewer iterations than its 1M (the iterations column), Adam with "
        "our learning rate, gradient-norm clipping and a linear learning-rate decay over each run's time budget.",
        "",
    ]
    md = out_dir / "act.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return [md, *files]
