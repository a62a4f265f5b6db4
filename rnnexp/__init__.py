"""rnnexp: Hydra + PyTorch Lightning experiments for recurrent neural networks."""

__version__ = "0.1.0"
