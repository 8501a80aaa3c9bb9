"""Symbol <-> id mapping for sequence models.

Ids are fixed by construction: the four specials come first (``<pad>`` = 0,
``<s>`` = 1, ``</s>`` = 2, ``<unk>`` = 3), then the other symbols in sorted
order.  The same symbol set therefore always gives the same ids, whatever
order the data was read in, and a checkpoint only needs the symbol list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from seqlab.errors import DataError

__all__ = ["Vocab"]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
_SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)


class Vocab:
    """An ordered vocabulary: specials, then sorted symbols.

    Attributes:
        pad, bos, eos, unk: ids of ``<pad>``, ``<s>``, ``</s>``, ``<unk>``
            (0, 1, 2, 3).
        itos: all symbols, indexed by id (specials included).

    Example:
        >>> v = Vocab.build([["K", "AE", "T"], ["D", "AO", "G"]])
        >>> v.encode(["K", "AE", "T"], add_eos=True)
        [8, 4, 9, 2]
        >>> v.decode([8, 4, 9, 2, 0, 0])
        ['K', 'AE', 'T']
    """

    SPECIALS: tuple[str, ...] = _SPECIALS
    pad: int = 0
    bos: int = 1
    eos: int = 2
    unk: int = 3

    def __init__(self, symbols: Iterable[str]) -> None:
        """Vocabulary of the specials plus ``symbols`` (de-duplicated, sorted).

        Raises:
            ValueError: a symbol is not a non-empty string, or is one of the
                specials (it would silently share their id).
        """
        unique = set()
        for symbol in symbols:
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"vocabulary symbols must be non-empty strings, got {symbol!r}")
            if symbol in _SPECIALS:
                raise ValueError(
                    f"symbol {symbol!r} clashes with a reserved special symbol "
                    f"{list(_SPECIALS)}"
                )
            unique.add(symbol)
        self.itos: tuple[str, ...] = _SPECIALS + tuple(sorted(unique))
        self._stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]]) -> Vocab:
        """Vocabulary of every symbol occurring in ``sequences``."""
        return cls(symbol for seq in sequences for symbol in seq)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.itos == other.itos

    def __repr__(self) -> str:
        symbols = self.itos[len(_SPECIALS) :]
        shown = " ".join(symbols[:10]) + (" ..." if len(symbols) > 10 else "")
        return f"Vocab({len(self)} ids: specials + {shown})"

    def encode(
        self, symbols: Iterable[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """Ids of ``symbols``; unknown symbols map to :attr:`unk`.

        Args:
            symbols: the sequence to encode (e.g. the letters of a word).
            add_bos: prepend :attr:`bos`.
            add_eos: append :attr:`eos`.
        """
        ids = [self.bos] if add_bos else []
        ids.extend(self._stoi.get(s, self.unk) for s in symbols)
        if add_eos:
            ids.append(self.eos)
        return ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Symbols of ``ids`` (ints, or the elements of a 1-D tensor).

        With ``strip_special`` (the default) decoding stops at the first
        :attr:`eos` and drops :attr:`pad` and :attr:`bos`, so a padded model
        output decodes to just its content; ``<unk>`` is kept, since dropping
        it would hide a wrong prediction.  Without it, every id is mapped.

        Raises:
            ValueError: an id is outside ``[0, len(self))``.
        """
        out = []
        for raw in ids:
            i = int(raw)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary (size {len(self.itos)})")
            if strip_special:
                if i == self.eos:
                    break
                if i in (self.pad, self.bos):
                    continue
            out.append(self.itos[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for checkpoints: ``{"itos": [...]}``."""
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocab:
        """Inverse of :meth:`to_dict`.

        The stored list is checked, not trusted: it must start with the
        specials and list the other symbols sorted and unique, so that every
        id means what it meant when the checkpoint was written.

        Raises:
            DataError: ``data`` is not a vocabulary written by :meth:`to_dict`.
        """
        itos = data.get("itos") if isinstance(data, Mapping) else None
        if not isinstance(itos, list) or not all(isinstance(s, str) for s in itos):
            raise DataError("invalid vocabulary: expected {'itos': [str, ...]}")
        if tuple(itos[: len(_SPECIALS)]) != _SPECIALS:
            raise DataError(
                f"invalid vocabulary: must start with {list(_SPECIALS)}, "
                f"got {itos[: len(_SPECIALS)]}"
            )
        symbols = itos[len(_SPECIALS) :]
        if symbols != sorted(set(symbols)):
            raise DataError(
                "invalid vocabulary: symbols after the specials must be sorted and unique"
            )
        try:
            return cls(symbols)
        except ValueError as e:
            raise DataError(f"invalid vocabulary: {e}") from None
