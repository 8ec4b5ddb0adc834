"""The install is the tested set: every package in constraints.txt is installed at exactly its
pinned version, and every dependency pyproject.toml names is pinned there."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            found[canonical(name)] = pinned.strip()
    return found


def test_every_dependency_of_the_project_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    named = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    wanted = {canonical(re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0]) for spec in named}
    missing = wanted - set(pins())
    assert not missing, f"run ./dev lock: not pinned in constraints.txt: {sorted(missing)}"


def test_the_installed_packages_are_the_pinned_versions():
    drift = {}
    for name, pinned in pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            drift[name] = (pinned, installed)
    assert not drift, f"(pinned, installed): {drift}; ./dev reinstalls when constraints.txt changes"
