"""Training pairs that are not pool samples (BGADL's synthesised x′): part of the run state,
saved with every stage snapshot, served only by the task module's training loader — never to
a selector, the candidates or the test set — and counted apart (`n_synthetic`), never as
labels."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from al.data import ALData


class SyntheticPairs(Dataset):
    """`(x, y)` pairs a method contributed, in the task learner's input space (what the
    training loader would serve), with the stage each was made at and the pool sample it was
    made from."""

    def __init__(self) -> None:
        self.x = torch.empty(0)
        self.y = torch.empty(0, dtype=torch.int64)
        self.stage = torch.empty(0, dtype=torch.int64)
        self.source = torch.empty(0, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        return self.x[position], int(self.y[position])

    def add(self, x: torch.Tensor, y: torch.Tensor, source: torch.Tensor, stage: int) -> None:
        """Keep `x` (a copy on the CPU) with labels `y`, made at `stage` from pool samples
        `source` (global indices)."""
        x, y, source = x.detach().cpu().float(), y.cpu().long(), source.cpu().long()
        if not (len(x) == len(y) == len(source)):
            raise ValueError(f"{len(x)} synthetic inputs, {len(y)} labels, {len(source)} sources")
        self.x = x.clone() if len(self) == 0 else torch.cat([self.x, x])
        self.y = torch.cat([self.y, y])
        self.source = torch.cat([self.source, source])
        self.stage = torch.cat([self.stage, torch.full((len(y),), stage, dtype=torch.int64)])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "y": self.y, "stage": self.stage, "source": self.source}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.x, self.y = state["x"].clone(), state["y"].clone()
        self.stage, self.source = state["stage"].clone(), state["source"].clone()


def synthesize_picks(
    module: torch.nn.Module,
    data: ALData,
    picks: np.ndarray,
    synthetic: SyntheticPairs,
    stage: int,
    batch_size: int,
) -> None:
    """Let a task module that stores synthetic pairs (`stores_synthetic`) make one from each
    sample just labeled, `module.synthesize(x, y)` on its test-time input and its new label;
    no other module is asked."""
    if not module.stores_synthetic:
        return
    picks = np.asarray(picks, dtype=np.int64)
    labels = torch.from_numpy(data.pool_targets[picks])
    loader = DataLoader(data.pool.unlabeled(picks), batch_size=batch_size)
    was_training = module.training
    module.eval()
    made, start = [], 0
    with torch.no_grad():
        for x, _ in loader:
            batch_labels = labels[start : start + len(x)].to(module.device)
            made.append(module.synthesize(x.to(module.device), batch_labels).cpu())
            start += len(x)
    module.train(was_training)
    synthetic.add(torch.cat(made), labels, torch.from_numpy(picks), stage)
