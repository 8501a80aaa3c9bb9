"""The encoder of the seq2seq model: embeddings, then any registered recurrent cell.

Notation: ``B`` batch, ``S`` source length, ``E`` embedding size, ``H`` hidden
size per direction, ``D`` directions, ``L`` layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import Recurrent

__all__ = ["Encoder", "reverse_padded"]


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of ``x (B, S, ...)`` within its own length; padding stays in place."""
    B, S = x.shape[:2]
    positions = torch.arange(S, device=x.device).unsqueeze(0)  # (1, S)
    lengths = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, S)
    index = index.view(B, S, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class Encoder(nn.Module):
    """Embed the source symbols and run a (bidirectional) recurrent stack over them.

    ``reverse_source`` feeds every sequence backwards, the trick of Sutskever,
    Vinyals & Le 2014 (sec. 3.3) that shortens the path between the first
    source and the first target words of an encoder-decoder without
    attention.  The outputs are put back in source order, so attention
    weights always refer to the original positions.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        reverse_source: bool = False,
        pad: int = 0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad)
        self.rnn = Recurrent(
            cell, emb_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.reverse_source = reverse_source
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``src (B, S)`` ids, ``lengths (B,)`` -> ``(memory (B, S, D*H), summary (B, D*H))``.

        ``summary`` is the top layer's final ``h``, both directions
        concatenated: what a decoder without attention starts from.
        """
        if self.reverse_source:
            src = reverse_padded(src, lengths)
        if self.training or not hasattr(self.rnn, "forward_embedded"):
            memory, state = self.rnn(self.dropout(self.embed(src)), lengths=lengths)  # (B, S, D*H)
        else:  # the first layer's input products come from a table of the embeddings (see there)
            memory, state = self.rnn.forward_embedded(self.embed, src, lengths)
        h = state if isinstance(state, Tensor) else state[0]  # (L*D, B, H)
        D = self.rnn.num_directions
        summary = torch.cat(list(h[-D:]), dim=-1)  # (B, D*H)
        if self.reverse_source:
            memory = reverse_padded(memory, lengths)
        return memory, summary
