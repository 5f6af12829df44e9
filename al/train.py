"""Entry point: `python -m al.train [overrides]` runs one active-learning experiment."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from al.loop import run

# Lightning's per-Trainer notices (devices, tips, "max_epochs reached") would repeat every stage.
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
# Lightning 2.6 calls a torch.utils._pytree API that torch ≥ 2.10 deprecates; nothing to act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# Task modules validate only under eval_model=best_val; otherwise there is no validation set.
warnings.filterwarnings(
    "ignore", message="You defined a `validation_step` but have no `val_dataloader`"
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Compose, run (or resume) in Hydra's output directory; return the final test accuracy."""
    records = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    return records[-1]["test/acc"]


if __name__ == "__main__":
    main()
