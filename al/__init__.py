"""al: deep active learning experiments composed with Hydra and trained with Lightning."""

__version__ = "0.1.0"
