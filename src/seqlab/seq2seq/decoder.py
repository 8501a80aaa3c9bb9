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
whole target at once (one fused-kernel call: seqlab's on the CPU, cuDNN on CUDA) and attends
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
from ..nn._kernels.build import inference_kernels
from ..nn.attention import ATTENTIONS, make_attention

__all__ = ["AttentionDecoder", "DecoderState", "SplitCombine", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("none", *ATTENTIONS)


def _add_tanh_(a: Tensor, b: Tensor | None = None) -> Tensor:
    """``a = tanh(a + b)`` in place (inference): one pass on seqlab's kernels, else torch's ``add_``, ``tanh_``."""
    kernels = inference_kernels(a) if a.is_contiguous() and (b is None or b.shape == a.shape) else None
    if kernels is not None:
        kernels.add_tanh_(a, b if b is None or b.dtype == a.dtype else b.to(a.dtype))
        return a
    return (a if b is None else a.add_(b)).tanh_()


class SplitCombine(nn.Module):
    """Eq. 5's ``W_c [c; h]`` as ``W_cc c + W_ch h``: the two halves of ``W_c``, each its own ``nn.Linear``.

    The same function as the ``nn.Linear`` it splits (``forward`` takes the
    concatenation ``[c; h]``).  Inference copies that convert every
    ``nn.Linear`` into another number format (``seqlab.compress``: int8,
    bf16) split ``W_c`` first, so that they convert both halves and, like the
    float model, multiply the encoder outputs by ``W_cc`` once per sentence
    (:class:`DecoderState` ``values``).
    """

    def __init__(self, combine: nn.Linear, memory_size: int) -> None:
        super().__init__()
        if combine.bias is not None:
            raise ValueError("SplitCombine splits a W_c without bias")
        hidden_size = combine.in_features - memory_size
        self.memory_size = memory_size
        self.context = nn.Linear(memory_size, combine.out_features, bias=False)  # W_cc
        self.hidden = nn.Linear(hidden_size, combine.out_features, bias=False)  # W_ch
        with torch.no_grad():
            self.context.weight.copy_(combine.weight[:, :memory_size])
            self.hidden.weight.copy_(combine.weight[:, memory_size:])

    def forward(self, x: Tensor) -> Tensor:
        return self.context(x[..., : self.memory_size]) + self.hidden(x[..., self.memory_size :])


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
        self.memory_size = memory_size
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
        return DecoderState(rnn=rnn, feed=memory.new_zeros(B, self.hidden_size), memory=memory, cache=cache,
                            mask=mask, inputs=inputs, values=self._values(memory))

    def split_combine(self) -> None:
        """Hold ``W_c`` as its two halves, :class:`SplitCombine` (for inference copies; see there)."""
        if self.attention is not None and type(self.combine) is nn.Linear:
            self.combine = SplitCombine(self.combine, self.memory_size)

    def _values(self, memory: Tensor) -> Tensor | None:
        """``W_cc h̄_s`` for inference (:class:`DecoderState` ``values``), or None: in training, without
        attention, or where ``combine`` is neither a plain float ``nn.Linear`` nor a :class:`SplitCombine`
        (those run eq. 5 as written)."""
        if self.training or self.attention is None:
            return None
        if isinstance(self.combine, SplitCombine):
            return self.combine.context(memory)
        if type(self.combine) is nn.Linear:
            return F.linear(memory, self.combine.weight[:, : self.memory_size])
        return None

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
            stepping = h.dim() == 2 and not torch.is_grad_enabled()
            # A decoding step: the attention's output is a new tensor of this call, so W_ch h is added
            # into it and squashed in place (no temporaries of (B, H); beam 5 took about 0.95x the time).
            if isinstance(self.combine, SplitCombine):
                w_ch_h = self.combine.hidden(h)
                return (_add_tanh_(projected, w_ch_h) if stepping else torch.tanh(projected + w_ch_h)), weights
            w_ch = self.combine.weight[:, self.memory_size :]
            if stepping:
                return _add_tanh_(projected.addmm_(h, w_ch.t())), weights
            return torch.tanh(projected + F.linear(h, w_ch)), weights
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
