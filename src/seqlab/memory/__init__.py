"""Memory-augmented and adaptive-computation networks: the NTM and ACT (and the DMN)."""

from .act import ACT, ACTCell, Ponder
from .dmn import DMNConfig, DMNOutput, DMNPlus
from .ntm import NTM, NTMConfig, NTMState, NTMTrace

__all__ = ["ACT", "ACTCell", "Ponder", "NTM", "NTMConfig", "NTMState", "NTMTrace", "DMNConfig", "DMNOutput", "DMNPlus"]
