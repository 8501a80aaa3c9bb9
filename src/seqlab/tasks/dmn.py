"""DMN+ on bAbI-style question answering: the ``dmn`` recipe and its report.

Data: stories from seqlab's own simulator of the Weston et al. 2015 tasks
(:mod:`seqlab.data.babi`); the official bAbI files cannot be obtained
offline, and every number this recipe writes says so.

Training: one DMN+ (:class:`seqlab.memory.dmn.DMNPlus`) learns all chosen
tasks jointly, with one answer vocabulary for all of them; the dev metric is
the error over the pooled validation questions and the report gives the
test accuracy of every task.  Departure from Xiong et al. 2016, who train
one model per task: a joint model fits the 60-minute CPU budget of the
10k setting (10 tasks x 10,000 questions) in one run.

``seqlab train dmn --config configs/dmn.yaml --run-dir runs/dmn`` trains;
``seqlab report dmn`` scores ``runs/dmn/best`` on the test questions and
writes ``docs/results/dmn.md`` with a plot of the attention over sentences.
"""

from __future__ import annotations

import csv
import datetime
import json
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..checkpoint import load_checkpoint
from ..config import config_from_dict, load_config
from ..data import Vocab, bucket_batches
from ..data.babi import TASK_NAMES, Story, generate, load_babi, parse_tasks, tokenize
from ..errors import DataError, SeqlabError
from ..memory.dmn import DMNConfig, DMNPlus
from ..plot import pyplot
from ..train import TrainConfig, Trainer, TrainResult

__all__ = [
    "DMNRecipeConfig",
    "DMNTask",
    "DMNModel",
    "PAPER_DMN_PLUS_10K_ERROR",
    "encode_batch",
    "train_dmn",
    "evaluate_dmn",
    "report_dmn",
]

TASK = "dmn"

PAPER_DMN_PLUS_10K_ERROR: dict[int, float] = {
    1: 0.0, 2: 0.3, 3: 1.1, 4: 0.0, 5: 0.5, 6: 0.0, 7: 2.4, 8: 0.0, 9: 0.0, 10: 0.0,
    11: 0.0, 12: 0.0, 13: 0.0, 14: 0.2, 15: 0.0, 16: 45.3, 17: 4.2, 18: 2.1, 19: 0.0, 20: 0.0,
}  # fmt: skip
"""Test error (%) of the DMN+ on the real bAbI-10k, per task: Xiong, Merity & Socher 2016, Table 2."""


@dataclass(frozen=True)
class DMNRecipeConfig(TrainConfig, DMNConfig):
    """The DMN recipe: model sizes, optimisation and the simulated data in one flat config."""

    tasks: str = "1,2,3,6,7,8,11,15,16,17"  # bAbI-style tasks, comma-separated, or "all"
    train_size: int = 10000  # training questions per task (bAbI's settings: 1000 or 10000)
    valid_size: int = 0  # validation questions per task (0: a tenth of train_size)
    test_size: int = 1000  # test questions per task, scored by `seqlab report dmn`
    data_seed: int = 1  # seed of the story simulator (the model's seed is `seed`)
    batch_size: int = 100  # questions per training batch (stories of similar length)

    def validate(self) -> None:
        DMNConfig.validate(self)
        TrainConfig.validate(self)
        try:
            parse_tasks(self.tasks)
        except DataError as err:
            raise ValueError(f"{err} ({err.hint})") from None
        if self.train_size < 1 or self.test_size < 1 or self.valid_size < 0:
            raise ValueError("train_size and test_size must be >= 1, valid_size >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def task_list(self) -> tuple[int, ...]:
        return parse_tasks(self.tasks)

    def model_config(self) -> DMNConfig:
        return DMNConfig(**{f.name: getattr(self, f.name) for f in fields(DMNConfig)})


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------


def _encode(story: Story, words: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """One story as ids: ``(sentences (S, W), question (Q,))``, sentences right-padded with ``words.pad``."""
    sentences = [words.encode(tokenize(s)) for s in story.sentences]
    W = max(map(len, sentences))
    ids = torch.tensor([s + [words.pad] * (W - len(s)) for s in sentences])  # (S, W)
    return ids, torch.tensor(words.encode(tokenize(story.question)))


def _collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]], pad: int) -> tuple[torch.Tensor, ...]:
    """Encoded stories -> ``(story (B, S, W), question (B, Q), question_lengths (B,))``."""
    S = max(s.shape[0] for s, _ in items)
    W = max(s.shape[1] for s, _ in items)
    lengths = torch.tensor([len(q) for _, q in items])
    story = torch.full((len(items), S, W), pad, dtype=torch.long)
    question = torch.full((len(items), int(lengths.max())), pad, dtype=torch.long)
    for b, (s, q) in enumerate(items):
        story[b, : s.shape[0], : s.shape[1]] = s
        question[b, : len(q)] = q
    return story, question, lengths


def encode_batch(
    stories: Sequence[Story], words: Vocab, answers: Vocab | None = None
) -> tuple[torch.Tensor, ...]:
    """Pad stories into ``(story (B, S, W), question (B, Q), question_lengths (B,)[, answers (B,)])``.

    Sentences and words are right-padded with ``words.pad``; words and
    answers outside the vocabularies map to their ``<unk>`` ids.
    """
    batch = _collate([_encode(s, words) for s in stories], words.pad)
    if answers is None:
        return batch
    return (*batch, torch.tensor(answers.encode(s.answer for s in stories)))


def _vocabularies(train: Sequence[Story]) -> tuple[Vocab, Vocab]:
    words = Vocab(w for s in train for text in (*s.sentences, s.question) for w in tokenize(text))
    return words, Vocab(s.answer for s in train)


# --------------------------------------------------------------------------
# the trained model
# --------------------------------------------------------------------------


class DMNModel:
    """A trained DMN+ with its vocabularies: stories in, answers (and attention) out."""

    def __init__(self, model: DMNPlus, words: Vocab, answers: Vocab, meta: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.words = words
        self.answers = answers
        self.meta = meta or {}

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> DMNModel:
        tensors, meta, _ = load_checkpoint(folder)
        if meta.get("task") != TASK:
            raise SeqlabError(f"checkpoint {folder} is a {meta.get('task')!r} model, not a DMN model")
        try:
            config = config_from_dict(DMNRecipeConfig, meta["config"], source=f"{folder}/meta.json")
            words, answers = Vocab.from_dict(meta["words"]), Vocab.from_dict(meta["answers"])
            model = DMNPlus(len(words), len(answers), config.model_config(), pad=words.pad)
            model.load_state_dict(tensors)
        except (KeyError, RuntimeError) as err:
            raise SeqlabError(f"checkpoint {folder} does not match its config: {str(err).splitlines()[0]}") from None
        return cls(model, words, answers, meta)

    @property
    def config(self) -> DMNRecipeConfig:
        return config_from_dict(DMNRecipeConfig, self.meta["config"])

    @torch.no_grad()
    def predict(self, stories: Sequence[Story], *, batch_size: int = 250) -> tuple[list[str], list[torch.Tensor]]:
        """Answers, and the attention ``(P, S_story)`` over each story's sentences in every pass."""
        order = sorted(range(len(stories)), key=lambda i: len(stories[i].sentences))
        answers: list[str] = [""] * len(stories)
        gates: list[torch.Tensor] = [torch.empty(0)] * len(stories)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out = self.model(*encode_batch([stories[i] for i in chunk], self.words))
            for row, i in enumerate(chunk):
                answers[i] = self.answers.itos[int(out.logits[row].argmax())]
                gates[i] = out.gates[:, row, : len(stories[i].sentences)]
        return answers, gates


def evaluate_dmn(model: DMNModel, stories: Sequence[Story]) -> dict[int, dict[str, Any]]:
    """Per task: questions, accuracy, and the mean attention on the supporting facts in each pass."""
    predicted, gates = model.predict(stories)
    out: dict[int, dict[str, Any]] = {}
    for task in sorted({s.task for s in stories}):
        rows = [i for i, s in enumerate(stories) if s.task == task]
        correct = sum(predicted[i] == stories[i].answer for i in rows)
        support = torch.stack([gates[i][:, list(stories[i].support)].sum(-1) for i in rows])  # (N, P)
        out[task] = {"questions": len(rows), "accuracy": correct / len(rows),
                     "support_attention": support.mean(0).tolist()}
    return out


# --------------------------------------------------------------------------
# the trainer's view
# --------------------------------------------------------------------------


class DMNTask:
    """Batches, loss, validation and checkpoint metadata of the DMN recipe."""

    metric = "error"

    def __init__(self, config: DMNRecipeConfig, data: dict[str, list[Story]] | None = None) -> None:
        self.config = config
        if data is None:
            data = load_babi(config.task_list, config.train_size, config.data_seed,
                             valid_size=config.valid_size or None, test_size=0)
        self.train, self.valid = data["train"], data["valid"]
        self.words, self.answers = _vocabularies(self.train)
        self._encoded = [_encode(s, self.words) for s in self.train]  # once: batches only pad
        self._answer_ids = torch.tensor(self.answers.encode(s.answer for s in self.train))

    def build_model(self) -> DMNPlus:
        return DMNPlus(len(self.words), len(self.answers), self.config.model_config(), pad=self.words.pad)

    def train_batches(self, epoch: int) -> list[tuple[torch.Tensor, ...]]:
        lengths = [len(s.sentences) for s in self.train]
        groups = bucket_batches(lengths, batch_size=self.config.batch_size, seed=self.config.seed * 1000 + epoch)
        return [(*_collate([self._encoded[i] for i in group], self.words.pad), self._answer_ids[group])
                for group in groups]

    def loss(self, model: DMNPlus, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        story, question, lengths, answers = batch
        logits = model(story, question, lengths).logits
        return F.cross_entropy(logits, answers, reduction="sum"), len(answers)

    def evaluate(self, model: DMNPlus) -> dict[str, float]:
        scores = evaluate_dmn(DMNModel(model, self.words, self.answers), self.valid)
        model.train()
        correct = sum(s["accuracy"] * s["questions"] for s in scores.values())
        error = 1.0 - correct / sum(s["questions"] for s in scores.values())
        return {"error": error, **{f"task{t}": s["accuracy"] for t, s in scores.items()}}

    def meta(self) -> dict[str, Any]:
        return {"task": TASK, "config": asdict(self.config), "words": self.words.to_dict(),
                "answers": self.answers.to_dict()}


def train_dmn(config: DMNRecipeConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    task = DMNTask(config)
    torch.manual_seed(config.seed)  # the same initial weights for a given seed
    model = task.build_model()
    log(f"dmn: bAbI-style tasks {config.tasks} from seqlab's simulator, {len(task.train):,} training and "
        f"{len(task.valid):,} validation questions, {sum(p.numel() for p in model.parameters()):,} parameters "
        f"-> {run_dir}")
    return Trainer(model, task, config, run_dir).fit(resume=resume, log=log)


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------

_RUN_10K, _RUN_1K = "dmn", "dmn-1k"
_CONFIG = "configs/dmn.yaml"
_TRAIN_10K = f"seqlab train dmn --config {_CONFIG} --run-dir runs/{_RUN_10K}"
_TRAIN_1K = f"seqlab train dmn --config {_CONFIG} train_size=1000 --run-dir runs/{_RUN_1K}"
_PLOT_TASKS = (2, 3, 11, 16)  # multi-fact tasks whose attention is worth looking at


def _load_run(folder: Path) -> tuple[DMNModel, list[dict[str, str]]]:
    model = DMNModel.from_checkpoint(folder / "best")
    log_path = folder / "log.csv"
    rows = []
    if log_path.is_file():
        with log_path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    return model, rows


def _attention_png(model: DMNModel, stories: Sequence[Story], path: Path) -> Path:
    """One panel per story: sentences (rows, supporting facts starred) x passes (columns)."""
    plt = pyplot()

    predicted, gates = model.predict(stories)
    cols = 2
    rows = (len(stories) + cols - 1) // cols
    height = max(max(len(s.sentences) for s in stories) * 0.32 + 1.6, 3.0)
    fig, axes = plt.subplots(rows, cols, figsize=(15, height * rows), squeeze=False)
    for ax in axes.flat[len(stories):]:
        ax.axis("off")
    for ax, story, answer, g in zip(axes.flat, stories, predicted, gates):
        image = ax.imshow(g.T.numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        labels = [("* " if i in story.support else "") + s for i, s in enumerate(story.sentences)]
        ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
        ax.set_xticks(range(g.shape[0]), labels=[f"pass {t + 1}" for t in range(g.shape[0])], fontsize=8)
        ax.tick_params(length=0)
        ax.set_title(f"task {story.task}: {story.question}  answer {story.answer}, predicted {answer}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle("DMN+ attention over sentences per pass (* = supporting fact); "
                 "stories from seqlab's own bAbI-style simulator", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _train_command(config: DMNRecipeConfig, run_name: str) -> str:
    """The ``seqlab train`` command of a run: configs/dmn.yaml plus every setting that differs from it."""
    base = DMNRecipeConfig()
    command = f"seqlab train dmn --run-dir runs/{run_name}"
    if Path(_CONFIG).is_file():  # the report runs from the repository root
        base = load_config(DMNRecipeConfig, _CONFIG)
        command = f"seqlab train dmn --config {_CONFIG} --run-dir runs/{run_name}"
    changed = [f"{f.name}={_yaml_scalar(getattr(config, f.name))}" for f in fields(DMNRecipeConfig)
               if getattr(config, f.name) != getattr(base, f.name)]
    return " ".join([command, *changed])


def _yaml_scalar(value: Any) -> str:
    """``value`` as a ``key=value`` override reads it back (a lone task number stays text: ``15,``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value}," if isinstance(value, str) and value.isdigit() else str(value)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _training_line(name: str, model: DMNModel, log_rows: list[dict[str, str]]) -> str:
    cfg = model.config
    seconds = float(log_rows[-1]["seconds"]) if log_rows else float(model.meta.get("train_seconds", 0.0))
    params = sum(p.numel() for p in model.model.parameters())
    return (f"- {name}: {cfg.train_size:,} training questions per task, {len(log_rows)} epochs "
            f"(budget: max_minutes {cfg.max_minutes}) in "
            f"{seconds / 60:.1f} min on {cfg.threads or 'the default number of'} torch thread(s) (best: epoch {model.meta.get('epoch')}), "
            f"{params:,} parameters, hidden {cfg.hidden_size}, {cfg.passes} passes, "
            f"{'tied' if cfg.tied_memory else 'untied'} memory update")


def _size(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def report_dmn(runs_dir: Path, out_dir: Path) -> list[Path]:
    """Score the trained run(s) on the test questions; write ``dmn.md``, ``dmn.json`` and ``dmn_attention.png``.

    ``runs_dir/dmn`` (the 10k recipe) is required; ``runs_dir/dmn-1k`` adds
    a column when it exists.
    """
    folders = [Path(runs_dir) / _RUN_10K, Path(runs_dir) / _RUN_1K]
    if not (folders[0] / "best" / "meta.json").is_file():
        raise SeqlabError(f"no trained DMN run in {folders[0]} (missing {folders[0] / 'best'})",
                          hint=f"train it first: {_TRAIN_10K}  (optional 1k column: {_TRAIN_1K})")
    present = [f for f in folders if (f / "best" / "meta.json").is_file()]
    runs = [_load_run(f) for f in present]
    labels = [f"seqlab DMN+, simulator {_size(m.config.train_size)}" for m, _ in runs]
    scores = []
    for model, _ in runs:
        cfg = model.config
        test = [s for t in cfg.task_list for s in generate(t, cfg.test_size, cfg.data_seed, split="test")]
        scores.append(evaluate_dmn(model, test))
    model, _ = runs[0]
    cfg = model.config
    tasks = list(cfg.task_list)

    out_dir = Path(out_dir)
    stories = []
    for t in _PLOT_TASKS:
        if t in tasks:
            test = generate(t, 50, cfg.data_seed, split="test")
            stories.append(next((s for s in test if 4 <= len(s.sentences) <= 12), test[0]))
    png = _attention_png(model, stories or [generate(tasks[0], 1, cfg.data_seed, split="test")[0]],
                         out_dir / "dmn_attention.png")

    header = ["task", "name", *labels, "DMN+ paper, real bAbI-10k",
              f"attention on supporting facts ({labels[0]}), pass 1 / 2 / ..."]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 3) + "---|"]
    for t in tasks:
        row = [str(t), TASK_NAMES[t]]
        row += [_pct(s[t]["accuracy"]) if t in s else "-" for s in scores]
        row.append(f"{100 - PAPER_DMN_PLUS_10K_ERROR[t]:.1f}%")
        row.append(" / ".join(f"{a:.2f}" for a in scores[0][t]["support_attention"]))
        lines.append("| " + " | ".join(row) + " |")

    def summary(s: dict[int, dict[str, Any]]) -> str:
        acc = [s[t]["accuracy"] for t in tasks if t in s]
        return (f"mean {_pct(sum(acc) / len(acc))}, {sum(a == 1.0 for a in acc)} of {len(acc)} tasks at 100%, "
                f"{sum(a >= 0.95 for a in acc)} passed (accuracy >= 95%, bAbI's criterion)")

    paper = [100 - PAPER_DMN_PLUS_10K_ERROR[t] for t in tasks]
    paper_line = (f"mean {sum(paper) / len(paper):.1f}%, {sum(p == 100.0 for p in paper)} of {len(paper)} tasks at "
                  f"100%, {sum(p >= 95 for p in paper)} passed; on all 20 real tasks "
                  f"{sum(e == 0.0 for e in PAPER_DMN_PLUS_10K_ERROR.values())} at 100% and "
                  f"{sum(e <= 5.0 for e in PAPER_DMN_PLUS_10K_ERROR.values())} passed")
    commands = [_train_command(m.config, f.name) for (m, _), f in zip(runs, present)] + ["seqlab report dmn"]
    text = [
        "# DMN+ on bAbI-style question answering",
        "",
        f"Written by `seqlab report dmn` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"seqlab {__version__}, Python {platform.python_version()}, torch {torch.__version__}) from the "
        "run(s) trained with:",
        "",
        "```sh",
        *commands,
        "```",
        "",
        "**Data: every story, question and answer on this page comes from seqlab's own bAbI-style simulator** "
        "(`seqlab.data.babi`), written from the task descriptions of Weston et al. 2015. The official bAbI "
        "files cannot be obtained offline, so these are *not* the bAbI tasks: the column \"DMN+ paper, real "
        "bAbI-10k\" (Xiong, Merity & Socher 2016, Table 2: 100% minus the published test error) is on "
        "different data and is shown for orientation only.",
        "",
        "Setup:",
        "",
        *[_training_line(label, m, log) for label, (m, log) in zip(labels, runs)],
        f"- one model for all {len(tasks)} tasks (joint training; the paper trains one model per task); "
        "single-word answers as a classification over the answer vocabulary (task 8's lists are one joint "
        "token such as `apple,football`)",
        f"- test: {cfg.test_size:,} simulated questions per task ({sum(s['questions'] for s in scores[0].values()):,} "
        f"in all) from the simulator's `test` stream of data seed {cfg.data_seed}, never used in training",
        "- attention on supporting facts: the softmax attention mass on the simulator's supporting facts, "
        "averaged over a task's test questions, for each memory pass",
        "",
        *lines,
        "",
        *[f"- {label}: {summary(s)}" for label, s in zip(labels, scores)],
        f"- DMN+ paper, real bAbI-10k, the same tasks: {paper_line}",
        "",
        "## Attention over sentences",
        "",
        f"![DMN+ attention per pass]({png.name})",
        "",
        "Test stories from seqlab's simulator; rows are the story's sentences (supporting facts starred), "
        "columns the memory passes, darker = more attention.",
        "",
    ]
    md = out_dir / "dmn.md"
    md.write_text("\n".join(text), encoding="utf-8")
    record = out_dir / "dmn.json"
    numbers = {label: {str(t): v for t, v in s.items()} for label, s in zip(labels, scores)}
    record.write_text(json.dumps({"data": "seqlab's own bAbI-style simulator (not the official bAbI files)",
                                  "test_accuracy": numbers, "paper_dmn_plus_error_real_babi_10k":
                                  PAPER_DMN_PLUS_10K_ERROR}, indent=2) + "\n", encoding="utf-8")
    return [md, record, png]
