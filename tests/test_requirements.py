"""Every package the project's code imports is pinned in requirements.txt, at
the version installed: an unpinned one (asgiref, whose executor argument needs
3.13) is whatever pip picks on the next machine."""

import ast
import re
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ["chat", "chatproject", "tests", "bench"]
OWN = {"chat", "chatproject", "tests", "bench", "openai_stub"}


def _imported_top_level_names() -> set[str]:
    names = set()
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - OWN - set(sys.stdlib_module_names)


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[_normal(match.group(1))] = match.group(2)
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_pinned_at_the_installed_version():
    distributions = packages_distributions()
    pins = _pins()
    imported = _imported_top_level_names()
    assert {"django", "asgiref", "openai", "redis"} <= imported
    problems = []
    for name in sorted(imported):
        for distribution in distributions.get(name, [name]):
            pinned = pins.get(_normal(distribution))
            if pinned is None:
                problems.append(f"{name} (from {distribution}) is not pinned")
            elif pinned != version(distribution):
                problems.append(f"{distribution} is pinned at {pinned} but {version(distribution)} is installed")
    assert not problems, problems
