"""Golden test: Core-set's greedy k-center against the TA-VAAL authors' `kcenterGreedy`
(cubeyoung/TA-VAAL `kCenterGreedy.select_batch_`, as its `get_kcg` calls it; fixture made by
make_kcenter.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from al.methods.coreset import k_center_greedy
from al.methods.selector import TieBreak

FIXTURE = json.loads(Path(__file__).with_name("kcenter.json").read_text())
ATOL = 1e-5


def test_picks_and_radii_match_kcenter_greedy():
    """Identical picks, and each pick's distance to its nearest center when picked."""
    for case in FIXTURE["cases"]:
        candidates, labeled = torch.tensor(case["candidates"]), torch.tensor(case["labeled"])
        picks, radii = k_center_greedy(candidates, labeled, len(case["picks"]), TieBreak(0))
        assert picks.tolist() == case["picks"]
        torch.testing.assert_close(radii, torch.tensor(case["radii"]), atol=ATOL, rtol=0)
