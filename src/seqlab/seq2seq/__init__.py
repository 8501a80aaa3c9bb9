"""Sequence-to-sequence models and the searches that decode them."""

from .search import SearchResult, Stepper, beam_search, greedy_search

__all__ = ["SearchResult", "Stepper", "beam_search", "greedy_search"]
