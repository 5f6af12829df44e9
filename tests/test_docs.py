"""The README and the documentation site agree with the code and the configs: the README stays
a short front door, every page is in the site's navigation, every `python -m` command and every
config choice they name exists, and the site builds in strict mode."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from al.build import build_data

from conftest import TINY
from test_contract import assert_blind_to_unlabeled_labels

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONF = ROOT / "conf"
# Config groups whose choices the docs name as `group=choice` (Hydra's override syntax).
GROUPS = ("method", "dataset", "model", "budget", "optimizer", "trainer", "logger", "experiment")
CHOICE = re.compile(r"(?<![\w./-])\+?(" + "|".join(GROUPS) + r")=([\w,]+)")
MODULE = re.compile(r"python -m (al(?:\.\w+)*)")
# The sections of docs/extending.md whose module and YAML a test builds a method from.
TEMPLATES = ("Adding a method", "Set-based selectors", "A task module of its own")


def texts() -> dict[str, str]:
    """The README and every docs page, by their path relative to the repository."""
    pages = [README, *sorted(DOCS.glob("*.md"))]
    return {str(page.relative_to(ROOT)): page.read_text() for page in pages}


def nav_pages(nav: list) -> list[str]:
    """Every page the mkdocs.yml navigation lists, sections flattened."""
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def mkdocs_nav() -> list[str]:
    # mkdocs.yml holds no Python tags, so the safe loader reads it.
    return nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def section(text: str, heading: str) -> str:
    """The text under the level-2 `heading`, up to the next level-2 heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_is_a_short_front_door_naming_make_test():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200
    assert any("make test" in line for line in lines)


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    nav = mkdocs_nav()
    assert len(nav) == len(set(nav))
    assert all((DOCS / page).is_file() for page in nav), nav
    assert sorted(nav) == sorted(page.name for page in DOCS.glob("*.md"))


def test_every_python_m_command_names_an_importable_module():
    commands = {(path, module) for path, text in texts().items() for module in MODULE.findall(text)}
    assert ("README.md", "al.train") in commands
    missing = [
        (path, module) for path, module in commands if importlib.util.find_spec(module) is None
    ]
    assert not missing


def test_every_config_choice_written_names_a_config_file():
    named, missing = 0, []
    for path, text in texts().items():
        for group, values in CHOICE.findall(text):
            for value in filter(None, values.split(",")):
                if value != value.lower():
                    continue  # a placeholder: method=NAME
                named += 1
                if not (CONF / group / f"{value}.yaml").is_file():
                    missing.append(f"{path}: {group}={value}")
    assert named > 50
    assert not missing


def template(heading: str) -> tuple[str, str]:
    """The (module, YAML) a section of docs/extending.md gives as its complete template."""
    text = section((DOCS / "extending.md").read_text(), heading)
    (module,) = fenced_blocks(text, "python")
    (config,) = fenced_blocks(text, "yaml")
    return module, config


@pytest.mark.parametrize("heading", TEMPLATES)
def test_each_template_is_one_complete_module_and_yaml(heading):
    module, config = template(heading)
    compile(module, "template.py", "exec")
    method = yaml.safe_load(config)
    assert not (CONF / "method" / f"{method['name']}.yaml").exists()
    targets = [
        method[part].get("_target_", "") for part in ("module", "selector") if part in method
    ]
    assert any(target.startswith(f"al.methods.{method['name']}.") for target in targets)
    assert "..." not in module and "..." not in config


@pytest.mark.parametrize("heading", TEMPLATES)
def test_a_method_built_from_each_template_passes_the_selector_contract(
    heading, tmp_path, monkeypatch
):
    """A score-based method, a set-based one and one with its own training regime, each one
    module (imported under its documented path) and one YAML (added to a copy of conf/) with
    nothing in shared code: the method composes by name, trains, and passes the contract
    test's checks (picks and scores unchanged when the unlabeled labels are poisoned)."""
    source, config = template(heading)
    name = yaml.safe_load(config)["name"]
    module = types.ModuleType(f"al.methods.{name}")
    exec(compile(source, f"al/methods/{name}.py", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    conf = shutil.copytree(CONF, tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (conf / "method" / f"{name}.yaml").write_text(config)
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*TINY, f"method={name}"])
    assert_blind_to_unlabeled_labels(cfg, build_data(cfg.dataset))


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_the_site_builds_in_strict_mode(tmp_path):
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    result = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "extending" / "index.html").is_file()
