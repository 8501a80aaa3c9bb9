"""Neural-network building blocks: the cell zoo, the generic recurrent layer and a CRF output layer."""

from . import init
from .cells import CELLS, RecurrentCell
from .crf import CRF
from .recurrent import Recurrent, from_torch

__all__ = ["CELLS", "CRF", "RecurrentCell", "Recurrent", "from_torch", "init"]
