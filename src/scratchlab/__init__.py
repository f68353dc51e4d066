"""scratchlab: classic recurrent and generative models from primitives, checked against PyTorch."""

__version__ = "0.1.0"
