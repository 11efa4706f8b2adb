"""brakepedal: a verifiable, time-limited, multilateral pause on frontier AI training."""

__all__ = ["__version__"]

__version__ = "0.1.0"
