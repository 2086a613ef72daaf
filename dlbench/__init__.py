"""dlbench: a command-line experiment runner for comparing how neural networks train."""

__version__ = "0.1.0"
