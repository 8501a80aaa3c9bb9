"""The encoder-decoder model: encoder + attention decoder + the search interface.

``Seq2Seq`` is what :mod:`seqlab.seq2seq.search` drives: it offers
``step(y_prev, state) -> (log_probs, state)`` and ``reorder_state``, so the
search never needs to know which cell, attention or options are inside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import CELLS
from .decoder import ATTENTION_KINDS, AttentionDecoder, DecoderState
from .encoder import Encoder
from .search import SearchResult, generate

__all__ = ["ModelConfig", "Seq2Seq"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`Seq2Seq` model."""

    cell: str = "lstm"  # any name in seqlab.nn.CELLS, for encoder and decoder
    emb_size: int = 64  # symbol embedding size, source and target
    enc_hidden: int = 256  # encoder units per direction
    enc_layers: int = 2
    bidirectional: bool = True  # bidirectional encoder
    dec_hidden: int = 256  # decoder units
    dec_layers: int = 1
    attention: str = "general"  # none | additive | dot | general
    input_feeding: bool = True  # feed h̃_{t-1} to the next step (Luong et al. 2015, sec. 3.3)
    reverse_source: bool = False  # feed the source backwards (Sutskever et al. 2014)
    dropout: float = 0.2  # on embeddings, between layers and before the output layer

    def validate(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; valid cells: {', '.join(CELLS)}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {self.attention!r}; valid: {', '.join(ATTENTION_KINDS)}")
        for name in ("emb_size", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attention == "none" and self.input_feeding:
            raise ValueError("input_feeding needs attention; set input_feeding=false with attention=none")
        if self.attention == "dot" and self.dec_hidden != self.enc_hidden * (2 if self.bidirectional else 1):
            raise ValueError("dot attention needs dec_hidden == enc_hidden * directions; use general or additive")


class Seq2Seq(nn.Module):
    """Attention encoder-decoder over symbol ids.

    ``forward(src, src_len, tgt_in)`` is teacher forcing for training;
    ``encode`` + ``step`` (+ the searches) are inference.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, config: ModelConfig, *, pad: int = 0) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.pad = pad
        self.encoder = Encoder(
            src_vocab,
            config.emb_size,
            config.enc_hidden,
            config.enc_layers,
            cell=config.cell,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            reverse_source=config.reverse_source,
            pad=pad,
        )
        self.decoder = AttentionDecoder(
            tgt_vocab,
            config.emb_size,
            config.dec_hidden,
            self.encoder.output_size,
            config.dec_layers,
            cell=config.cell,
            attention=config.attention,
            input_feeding=config.input_feeding,
            dropout=config.dropout,
            pad=pad,
        )

    def encode(self, src: Tensor, src_len: Tensor) -> DecoderState:
        """``src (B, S)``, ``src_len (B,)`` -> the decoder's initial state."""
        memory, summary = self.encoder(src, src_len)  # (B, S, M), (B, M)
        mask = torch.arange(src.shape[1], device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)
        return self.decoder.init_state(memory, summary, mask)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: ``-> (logits (B, T, V), attention weights (B, T, S) or None)``."""
        return self.teacher_force(tgt_in, self.encode(src, src_len))

    def teacher_force(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing from an encoded state (``encode``, rows picked with ``reorder_state``)."""
        return self.decoder(tgt_in, state)

    def loss(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0):
        """Summed cross-entropy over real target tokens, and their count."""
        logits, _ = self(src, src_len, tgt_in)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            tgt_out.reshape(-1),
            ignore_index=self.pad,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
        return loss, int((tgt_out != self.pad).sum())

    # ---------------------------------------------------------- search API

    def step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        logits, state, _ = self.decoder.step(y_prev, state)
        return torch.log_softmax(logits, dim=-1), state

    def reorder_state(self, state: DecoderState, index: Tensor) -> DecoderState:
        return state.select(index)

    def generate(self, src: Tensor, src_len: Tensor, **options) -> SearchResult:
        """Decode a batch: see :func:`seqlab.seq2seq.search.generate` for the options."""
        return generate(self, src, src_len, **options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
