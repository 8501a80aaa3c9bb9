"""The attention decoder (Luong, Pham & Manning 2015, sec. 3) with optional input feeding.

At each target step ``t``:

    h_t = RNN(y_{t-1} [; h̃_{t-1}], h_{t-1})        input feeding (sec. 3.3) adds h̃_{t-1}
    c_t, α_t = attention(h_t, encoder memory)        (seqlab.nn.attention)
    h̃_t = tanh(W_c [c_t; h_t])                       eq. 5, the attentional hidden state
    p(y_t | y_<t, x) = softmax(W_s h̃_t)              eq. 6

Without attention (``attention="none"``) ``h̃_t = h_t`` and the encoder
reaches the decoder only through its initial state: the plain
encoder-decoder of Sutskever et al. 2014 / Cho et al. 2014.

Teacher forcing without input feeding runs the recurrent stack over the
whole target at once (torch's fused kernel for standard cells) and attends
from all steps in one batched product; with input feeding each step needs
the previous one, so it loops over :meth:`AttentionDecoder.step`.

Notation: ``B`` batch, ``S`` source length, ``T`` target length, ``M``
memory size, ``H`` decoder hidden size, ``V`` target vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import Recurrent
from ..nn.attention import ATTENTIONS, make_attention

__all__ = ["AttentionDecoder", "DecoderState", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("none", *ATTENTIONS)


class DecoderState(NamedTuple):
    """Everything one decoder step needs; every tensor has the batch on dim 0 except ``rnn``.

    rnn: one ``(L, B, H)`` tensor per cell state component (``h``, ``c``, ...).
    feed: ``(B, H)`` previous attentional state ``h̃_{t-1}`` (input feeding).
    memory: ``(N, S, M)`` encoder outputs; cache: attention's ``precompute(memory)``.
    mask: ``(N, S)`` True at real source positions.
    inputs: ``(V, G)`` the first layer's input projection of every target
    symbol's embedding, or None: a lookup table that replaces embedding and
    projection at each step (inference without input feeding); not per row.
    rows: ``(B,)`` long, the row of memory, cache and mask (the source
    sentence) that each batch row reads, or None: row ``b`` reads row ``b``
    (``N = B``).  The searches pick, repeat and drop batch rows at every step
    (:meth:`select`); the sources stay where they are, so that the ``K``
    beams of a sentence read one copy of its encoder outputs and no step
    copies them.
    values: ``(N, S, H)`` the encoder outputs through the context half of
    ``W_c``, or None.  In eq. 5, ``W_c [c_t; h_t] = W_cc c_t + W_ch h_t`` and
    ``W_cc c_t = Σ_s α_s W_cc h̄_s``, so inference attends over these
    instead of the encoder outputs: ``W_cc`` multiplies each source position
    once instead of each step's context, and attention reads ``H`` floats a
    position instead of ``M``.
    """

    rnn: tuple[Tensor, ...]
    feed: Tensor
    memory: Tensor
    cache: Tensor
    mask: Tensor
    inputs: Tensor | None = None
    rows: Tensor | None = None
    values: Tensor | None = None

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` of the batch (for the searches); the sources are not copied."""
        return self._replace(
            rnn=tuple(s.index_select(1, index) for s in self.rnn),
            feed=self.feed.index_select(0, index),
            rows=index if self.rows is None else self.rows.index_select(0, index),
        )


class AttentionDecoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        memory_size: int,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        attention: str = "general",
        input_feeding: bool = True,
        dropout: float = 0.0,
        pad: int = 0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTION_KINDS)}")
        if attention == "none" and input_feeding:
            raise ValueError("input_feeding needs attention; set input_feeding=false with attention=none")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.input_feeding = input_feeding
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad)
        rnn_input = emb_size + (hidden_size if input_feeding else 0)
        self.rnn = Recurrent(cell, rnn_input, hidden_size, num_layers, batch_first=True, dropout=dropout)
        self.bridge = nn.Linear(memory_size, hidden_size)
        if attention == "none":
            self.attention = None
        else:
            attn_size = hidden_size if attention == "additive" else None
            self.attention = make_attention(attention, hidden_size, memory_size, attn_size)
            self.combine = nn.Linear(memory_size + hidden_size, hidden_size, bias=False)  # W_c
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, vocab_size)  # W_s

    # ------------------------------------------------------------------ state

    def init_state(self, memory: Tensor, summary: Tensor, mask: Tensor) -> DecoderState:
        """Initial state from the encoder: ``h_0 = tanh(W_b summary)`` in every layer, other components 0."""
        B = memory.shape[0]
        h0 = torch.tanh(self.bridge(summary)).unsqueeze(0).expand(self.num_layers, B, self.hidden_size)  # (L, B, H)
        zeros = torch.zeros_like(h0)
        rnn = (h0.contiguous(),) + tuple(zeros for _ in range(self.rnn.state_size - 1))
        cache = self.attention.precompute(memory) if self.attention is not None else memory
        # Without input feeding or dropout, the first layer's input at a step depends on y_{t-1} alone:
        # project all V embeddings once (V rows, fewer than a batch's steps) and look them up.
        inputs = None if self.input_feeding or self.training else self.rnn.cells[0].project(self.embed.weight)
        # Inference attends over W_cc h̄_s (DecoderState.values); training keeps eq. 5 as written.
        split = None if self.training else self._split_combine()
        values = F.linear(memory, split[0]) if split is not None else None
        return DecoderState(rnn=rnn, feed=memory.new_zeros(B, self.hidden_size), memory=memory, cache=cache,
                            mask=mask, inputs=inputs, values=values)

    def _split_combine(self) -> tuple[Tensor, Tensor] | None:
        """``W_c`` as ``(W_cc (H, M), W_ch (H, H))``, or None without attention or where ``combine`` is
        not a plain float ``nn.Linear`` (int8 and bf16 copies run eq. 5 as written)."""
        if self.attention is None or type(self.combine) is not nn.Linear:
            return None
        weight = self.combine.weight
        M = weight.shape[1] - self.hidden_size
        return weight[:, :M], weight[:, M:]

    # ------------------------------------------------------------------- step

    def step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One step: ``y_prev (B,)`` -> ``(logits (B, V), state, attention weights (B, S) or None)``."""
        if state.inputs is not None:
            x = None
        else:
            x = self.embed(y_prev)  # (B, E)
            if self.input_feeding:
                x = torch.cat([x, state.feed], dim=-1)  # (B, E + H)
            x = self.dropout(x)
        new_rnn = []
        for layer, cell in enumerate(self.rnn.cells):
            xp = state.inputs.index_select(0, y_prev) if x is None else cell.project(x)  # (B, G)
            s = cell.step(xp, tuple(c[layer] for c in state.rnn))
            new_rnn.append(s)
            x = s[0] if layer == self.num_layers - 1 else self.dropout(s[0])  # (B, H)
        if len(new_rnn) == 1:  # a view, no copy
            rnn = tuple(s.unsqueeze(0) for s in new_rnn[0])  # (1, B, H) each
        else:
            rnn = tuple(torch.stack([s[j] for s in new_rnn]) for j in range(self.rnn.state_size))  # (L, B, H) each
        h_tilde, weights = self._attend(x, state)
        state = state._replace(rnn=rnn, feed=h_tilde)
        return self.out(self.dropout(h_tilde)), state, weights

    def _attend(self, h: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """``h (B, [T,] H)`` -> ``(h̃ (B, [T,] H), weights (B, [T,] S))``: eq. 5 of Luong et al."""
        if self.attention is None:
            return h, None
        if state.values is not None:  # tanh(Σ_s α_s W_cc h̄_s + W_ch h_t)
            projected, weights = self.attention(h, state.memory, state.values, state.mask, cache=state.cache,
                                                rows=state.rows)
            return torch.tanh(projected + F.linear(h, self._split_combine()[1])), weights
        context, weights = self.attention(h, state.memory, state.memory, state.mask, cache=state.cache, rows=state.rows)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1))), weights

    # -------------------------------------------------------- teacher forcing

    def forward(self, tgt_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: ``tgt_in (B, T)`` (BOS, y_1, ...) -> ``(logits (B, T, V), weights (B, T, S) or None)``."""
        if self.input_feeding:
            logits, weights = [], []
            for t in range(tgt_in.shape[1]):
                logit, state, w = self.step(tgt_in[:, t], state)
                logits.append(logit)
                weights.append(w)
            return torch.stack(logits, dim=1), torch.stack(weights, dim=1)
        x = self.dropout(self.embed(tgt_in))  # (B, T, E)
        hx = state.rnn[0] if self.rnn.state_size == 1 else state.rnn
        h, _ = self.rnn(x, hx)  # (B, T, H)
        h_tilde, weights = self._attend(h, state)  # (B, T, H), (B, T, S)
        return self.out(self.dropout(h_tilde)), weights
