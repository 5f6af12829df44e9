"""The config tree carries no copies: no two files alike, no budget restating a default."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path

from omegaconf import OmegaConf

from al.budget import Budget

from conftest import CONF_DIR, compose_config

BUDGET_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(Budget)
    if field.default is not dataclasses.MISSING
}


def identical_files(conf_dir: Path) -> list[tuple[str, str]]:
    """Pairs of YAML files under `conf_dir` with the same bytes, as relative paths."""
    by_digest: dict[str, list[str]] = {}
    for path in sorted(conf_dir.rglob("*.yaml")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        by_digest.setdefault(digest, []).append(str(path.relative_to(conf_dir)))
    return [pair for paths in by_digest.values() for pair in itertools.combinations(paths, 2)]


def restated_budget_defaults(budget_dir: Path) -> list[str]:
    """`file: key: value` for every key of a budget file equal to Budget's default."""
    restated = []
    for path in sorted(budget_dir.glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(path))
        restated += [
            f"{path.name}: {key}: {value!r}"
            for key, value in values.items()
            if key in BUDGET_DEFAULTS and value == BUDGET_DEFAULTS[key]
        ]
    return restated


def test_no_two_config_files_are_byte_identical():
    pairs = identical_files(CONF_DIR)
    assert not pairs, "identical files: " + "; ".join(" = ".join(pair) for pair in pairs)


def test_the_copy_check_finds_a_copied_file(tmp_path):
    (tmp_path / "method").mkdir()
    (tmp_path / "method" / "a.yaml").write_text("name: a\n")
    (tmp_path / "method" / "b.yaml").write_text("name: b\n")
    (tmp_path / "c.yaml").write_text("name: a\n")
    assert identical_files(tmp_path) == [("c.yaml", "method/a.yaml")]


def test_no_budget_file_restates_a_default_of_the_budget():
    restated = restated_budget_defaults(CONF_DIR / "budget")
    assert not restated, "budget keys equal to al/budget.py's defaults: " + "; ".join(restated)


def test_the_budget_check_finds_a_restated_default(tmp_path):
    (tmp_path / "ok.yaml").write_text("initial: 10\nquery: 5\nstages: 2\nsubset: 100\n")
    (tmp_path / "copy.yaml").write_text(
        "defaults:\n  - ok\ninitial_strategy: random\ninitial_classes: [1, 2]\nsubset: null\n"
    )
    assert restated_budget_defaults(tmp_path) == [
        "copy.yaml: initial_strategy: 'random'",
        "copy.yaml: subset: None",
    ]


def test_every_budget_s_optional_keys_hold_the_budget_s_defaults():
    """train.yaml declares them once (so the command line can set them), equal to Budget's."""
    budget = OmegaConf.to_container(compose_config("budget=digits").budget)
    sizes = ("initial", "query", "stages")
    assert {key: value for key, value in budget.items() if key not in sizes} == BUDGET_DEFAULTS
