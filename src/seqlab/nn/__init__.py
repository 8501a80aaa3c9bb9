"""Neural-network building blocks: the cell zoo, the generic recurrent layer, a CRF output layer, L2 normalization, Maxout."""

from . import init
from .activations import DeadReLUCounter, Maxout, maxout
from .cells import CELLS, RecurrentCell
from .crf import CRF
from .norm import L2Norm
from .recurrent import Recurrent, from_torch

__all__ = ["CELLS", "CRF", "DeadReLUCounter", "L2Norm", "Maxout", "RecurrentCell", "Recurrent", "from_torch", "init",
           "maxout"]
