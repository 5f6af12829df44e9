"""al: deep active learning experiments composed with Hydra and trained with Lightning."""

from pathlib import Path

__version__ = "0.1.0"

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The Hydra config tree that `python -m al.train` composes from."""
