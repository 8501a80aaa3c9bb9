"""Neural-network building blocks: the cell zoo and the generic recurrent layer."""

from . import init
from .cells import CELLS, RecurrentCell
from .recurrent import Recurrent, from_torch

__all__ = ["CELLS", "RecurrentCell", "Recurrent", "from_torch", "init"]
