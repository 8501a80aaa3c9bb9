"""Neural-network building blocks: the cell zoo, the generic recurrent layer, a CRF output layer, L2 normalization."""

from . import init
from .cells import CELLS, RecurrentCell
from .crf import CRF
from .norm import L2Norm
from .recurrent import Recurrent, from_torch

__all__ = ["CELLS", "CRF", "L2Norm", "RecurrentCell", "Recurrent", "from_torch", "init"]
