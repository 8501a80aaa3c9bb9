"""Dynamic Memory Network (DMN+) for question answering over a list of sentences.

Kumar et al. 2016, "Ask Me Anything: Dynamic Memory Networks for Natural
Language Processing" (ICML; the DMN) and its improved form by Xiong, Merity &
Socher 2016, "Dynamic Memory Networks for Visual and Textual Question
Answering" (ICML; the DMN+).  Four modules:

* input module (DMN+ sec. 3.1): each sentence is the position-encoded sum of
  its word embeddings, then a bidirectional GRU runs over the sentences
  ("input fusion layer") so that facts can see each other; the two
  directions are summed into the facts ``F = (B, S, H)``.
* question module (DMN sec. 2.2): a GRU over the question's words; its last
  state is ``q`` ``(B, H)``.
* episodic memory (DMN+ sec. 3.3): several passes; each scores every fact
  against ``q`` and the memory ``m``, turns the scores into a softmax gate
  over the real sentences, runs an attention GRU whose update gate is that
  gate, and updates ``m`` with a ReLU layer (one per pass, "untied", or one
  shared, "tied").
* answer module (DMN sec. 2.4): one GRU step from ``m`` with ``q`` as input,
  then a linear layer over the answer vocabulary (single-word answers).

Padding: a story is ``(B, S, W)`` word ids with ``pad`` for missing words and
missing sentences; a sentence whose words are all ``pad`` is padding.
Padding sentences get gate 0 (they leave the attention GRU's state as it
is) and never enter the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import CELLS, Recurrent

__all__ = [
    "DMNConfig",
    "DMNOutput",
    "DMNPlus",
    "InputModule",
    "QuestionModule",
    "AttentionGRUCell",
    "EpisodicMemory",
    "AnswerModule",
    "position_encoding",
]


@dataclass(frozen=True)
class DMNConfig:
    """Sizes of the DMN+ (defaults: hidden size 80 and three passes, as Xiong et al. 2016 use for bAbI)."""

    emb_size: int = 80  # word embedding size
    hidden_size: int = 80  # facts, question, memory and answer state size
    passes: int = 3  # episodic memory passes
    tied_memory: bool = False  # one memory-update layer for all passes (False: one per pass, DMN+)
    dropout: float = 0.1  # dropout on the sentence encodings and before the answer layer

    def validate(self) -> None:
        if self.emb_size < 1 or self.hidden_size < 1:
            raise ValueError("emb_size and hidden_size must be >= 1")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class DMNOutput(NamedTuple):
    logits: Tensor  # (B, A) answer scores
    gates: Tensor  # (P, B, S) attention over sentences in each pass; 0 on padding sentences


def position_encoding(lengths: Tensor, max_len: int, dim: int) -> Tensor:
    """Word weights of the positional encoding, zero past each sentence's end.

    Sukhbaatar et al. 2015 (End-To-End Memory Networks, sec. 4.1), used by the
    DMN+ input module (Xiong et al. 2016, sec. 3.1)::

        l_jd = (1 - j/M) - (d/D) (1 - 2j/M)

    for word ``j = 1..M`` of a sentence of ``M`` words and embedding dimension
    ``d = 1..D``.  ``lengths (...)`` -> weights ``(..., max_len, dim)``.
    """
    j = torch.arange(1, max_len + 1, device=lengths.device, dtype=torch.float32)  # (W,)
    d = torch.arange(1, dim + 1, device=lengths.device, dtype=torch.float32) / dim  # (D,)
    m = lengths.clamp(min=1).unsqueeze(-1).to(torch.float32)  # (..., 1)
    jm = (j / m).unsqueeze(-1)  # (..., W, 1)
    weights = (1 - jm) - d * (1 - 2 * jm)  # (..., W, D)
    inside = (j <= lengths.unsqueeze(-1)).unsqueeze(-1)  # (..., W, 1)
    return weights * inside


class InputModule(nn.Module):
    """Sentences -> facts: positional encoding, then the input fusion layer (Xiong et al. 2016, sec. 3.1).

        f_i = Σ_j l_j ∘ w_j^i                          (sentence i, word embeddings w_j^i)
        f→_i = GRU_fwd(f_i, f→_{i-1}),  f←_i = GRU_bwd(f_i, f←_{i+1})
        F_i = f→_i + f←_i

    The word embeddings are the model's (shared with the question module), so
    this module takes embedded words.
    """

    def __init__(self, emb_size: int, hidden_size: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fusion = Recurrent("gru", emb_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, words: Tensor, word_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``words (B, S, W, E)`` embeddings, ``word_lengths (B, S)`` (0: padding sentence)
        -> ``(facts (B, S, H), sentence mask (B, S) bool)``."""
        mask = word_lengths > 0  # (B, S)
        if not bool(mask[:, 0].all()):
            raise ValueError("every story needs at least one sentence (its first sentence is all padding)")
        W, E = words.shape[-2:]
        sentences = (words * position_encoding(word_lengths, W, E)).sum(2)  # (B, S, E)
        sentences = self.dropout(sentences)
        fused, _ = self.fusion(sentences, lengths=mask.sum(1))  # (B, S, 2H), 0 on padding
        forward, backward = fused.chunk(2, dim=-1)
        return forward + backward, mask


class QuestionModule(nn.Module):
    """Question words -> ``q``: the last state of a GRU over their embeddings (Kumar et al. 2016, sec. 2.2)."""

    def __init__(self, emb_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = Recurrent("gru", emb_size, hidden_size, batch_first=True)

    def forward(self, words: Tensor, lengths: Tensor) -> Tensor:
        """``words (B, Q, E)`` embeddings, ``lengths (B,)`` -> ``q (B, H)``."""
        _, h = self.gru(words, lengths=lengths)  # h: (1, B, H), the state at each question's last word
        return h[0]


class AttentionGRUCell(nn.Module):
    """A GRU whose update gate is replaced by an attention gate (Xiong et al. 2016, sec. 3.3, "attention based GRU").

        r_i = σ(W^(r) x_i + U^(r) h_{i-1} + b^(r))
        h̃_i = tanh(W x_i + r_i ∘ U h_{i-1} + b^(h))
        h_i = g_i ∘ h̃_i + (1 - g_i) ∘ h_{i-1}

    ``g_i`` is a scalar per sentence, so the gate keeps the order of the
    facts (unlike a plain weighted sum) while letting attention decide how
    much each fact changes the state.  Like the cells of ``seqlab.nn``, the
    input part is split off (``project``) so a pass runs one GEMM over all
    sentences.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, 2 * hidden_size)  # [W^(r); W], [b^(r); b^(h)]
        self.hidden = nn.Linear(hidden_size, 2 * hidden_size, bias=False)  # [U^(r); U]

    def project(self, x: Tensor) -> Tensor:
        """``(..., I) -> (..., 2H)``: the input terms of the reset gate and the candidate."""
        return self.input(x)

    def step(self, xp: Tensor, gate: Tensor, h_tm1: Tensor) -> Tensor:
        """``xp (B, 2H)`` projected input, ``gate (B, 1)``, ``h_tm1 (B, H)`` -> ``h (B, H)``."""
        x_r, x_h = xp.chunk(2, dim=-1)
        u_r, u_h = self.hidden(h_tm1).chunk(2, dim=-1)
        r = torch.sigmoid(x_r + u_r)
        candidate = torch.tanh(x_h + r * u_h)
        return h_tm1 + gate * (candidate - h_tm1)  # = g ∘ h̃ + (1 - g) ∘ h_{i-1}

    def run(self, xp: Tensor, gates: Tensor) -> Tensor:
        """Run from a zero state over projected inputs ``xp (B, S, 2H)`` with ``gates (B, S)``;
        returns the last state ``(B, H)``."""
        h = xp.new_zeros(xp.shape[0], self.hidden_size)
        # unbind, not xp[:, i]: the backward of one unbind is one stack, while every slice
        # would scatter its gradient into a fresh (B, S, 2H) tensor of zeros.
        for x_i, g_i in zip(xp.unbind(1), gates.unsqueeze(-1).unbind(1)):
            h = self.step(x_i, g_i, h)
        return h

    def forward(self, x: Tensor, gates: Tensor) -> Tensor:
        """``x (B, S, I)``, ``gates (B, S)`` -> last state ``(B, H)``."""
        return self.run(self.project(x), gates)


class EpisodicMemory(nn.Module):
    """Passes of attention over the facts and memory updates (Xiong et al. 2016, sec. 3.3).

    Pass ``t = 1..P``, with ``m^0 = q``:

        z_i^t = [F_i ∘ q ; F_i ∘ m^{t-1} ; |F_i - q| ; |F_i - m^{t-1}|]      (attention mechanism)
        Z_i^t = W^(2) tanh(W^(1) z_i^t + b^(1)) + b^(2)
        g_i^t = softmax_i(Z_i^t)          over the real sentences only
        c^t   = last state of the attention GRU over F with gates g^t        (attention based GRU)
        m^t   = ReLU(W^t [m^{t-1} ; c^t ; q] + b)                             (episode memory updates)

    ``tied=True`` uses one ``W`` for every pass instead of the untied ``W^t``.
    """

    def __init__(self, hidden_size: int, passes: int, *, tied: bool = False) -> None:
        super().__init__()
        self.passes = passes
        self.tied = tied
        self.score = nn.Sequential(nn.Linear(4 * hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))
        self.attention_gru = AttentionGRUCell(hidden_size, hidden_size)
        self.update = nn.ModuleList(nn.Linear(3 * hidden_size, hidden_size) for _ in range(1 if tied else passes))

    def gate(self, facts: Tensor, mask: Tensor, q: Tensor, m: Tensor) -> Tensor:
        """Softmax attention ``(B, S)`` over the real sentences; exactly 0 on padding."""
        qe, me = q.unsqueeze(1), m.unsqueeze(1)  # (B, 1, H)
        z = torch.cat([facts * qe, facts * me, (facts - qe).abs(), (facts - me).abs()], dim=-1)  # (B, S, 4H)
        scores = self.score(z).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, S)
        return torch.softmax(scores, dim=-1)

    def forward(self, facts: Tensor, mask: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
        """``facts (B, S, H)``, ``mask (B, S)``, ``q (B, H)`` -> ``(m^P (B, H), gates (P, B, S))``."""
        xp = self.attention_gru.project(facts)  # (B, S, 2H): the same for every pass
        m, gates = q, []
        for t in range(self.passes):
            g = self.gate(facts, mask, q, m)  # (B, S)
            c = self.attention_gru.run(xp, g)  # (B, H)
            m = F.relu(self.update[0 if self.tied else t](torch.cat([m, c, q], dim=-1)))
            gates.append(g)
        return m, torch.stack(gates)


class AnswerModule(nn.Module):
    """Single-word answers (Kumar et al. 2016, sec. 2.4), one decoder step.

        a_0 = m^P,   a_1 = GRU([y_0 ; q], a_0),   y_1 = softmax(W^(a) a_1)

    With one step ``y_0`` is the zero vector, so the GRU's input is ``q``
    alone (its ``y_0`` weights would only ever multiply zeros).  The output
    is the logits over the answer vocabulary; the softmax is in the loss.
    """

    def __init__(self, hidden_size: int, num_answers: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = CELLS["gru"](hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_answers)

    def forward(self, m: Tensor, q: Tensor) -> Tensor:
        """``m (B, H)``, ``q (B, H)`` -> logits ``(B, A)``."""
        a, _ = self.gru(q, (m,))
        return self.out(self.dropout(a))


class DMNPlus(nn.Module):
    """The DMN+ of Xiong et al. 2016 for text (sec. 3), single-word answers.

    Word embeddings are shared by the input and question modules and drawn
    from N(0, 1) like ``torch.nn.Embedding``; the paper initialises linear
    layers with Xavier, which ``seqlab.nn``'s GRUs do for their input weights.

    ``forward(story (B, S, W), question (B, Q), question_lengths (B,))`` ->
    :class:`DMNOutput` with ``logits (B, A)`` and ``gates (P, B, S)``.
    """

    def __init__(self, vocab_size: int, num_answers: int, config: DMNConfig, *, pad: int = 0) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.pad = pad
        self.embedding = nn.Embedding(vocab_size, config.emb_size, padding_idx=pad)
        self.input_module = InputModule(config.emb_size, config.hidden_size, dropout=config.dropout)
        self.question_module = QuestionModule(config.emb_size, config.hidden_size)
        self.memory = EpisodicMemory(config.hidden_size, config.passes, tied=config.tied_memory)
        self.answer = AnswerModule(config.hidden_size, num_answers, dropout=config.dropout)
        for module in (self.memory, self.answer.out):
            for name, p in module.named_parameters():
                if p.dim() == 2:
                    nn.init.xavier_uniform_(p)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)

    def forward(self, story: Tensor, question: Tensor, question_lengths: Tensor) -> DMNOutput:
        facts, mask = self.input_module(self.embedding(story), (story != self.pad).sum(-1))  # (B, S, H), (B, S)
        q = self.question_module(self.embedding(question), question_lengths)  # (B, H)
        m, gates = self.memory(facts, mask, q)  # (B, H), (P, B, S)
        return DMNOutput(self.answer(m, q), gates)
