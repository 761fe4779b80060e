"""dwx: inverse-graphics experiments in PyTorch, configured with Hydra."""

__version__ = "0.1.0"
