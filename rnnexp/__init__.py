"""rnnexp: Hydra + PyTorch Lightning experiments for recurrent neural networks."""

__version__ = "0.1.0"

from rnnexp.runtime.resolvers import register as _register_resolvers

_register_resolvers()
