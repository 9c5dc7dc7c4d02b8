"""docs/architecture.md stays true to the tree: every folder its module map (section 2) names
exists and holds Python code, and every package the distribution ships is in the map."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
# A row of the module map: | `telephony/sip/` | 12 | 4376 | ... |
_ROW = re.compile(r"^\| `(?P<path>[a-z_/]+/)`")


def _module_map() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## 2.")
    end = text.index("\n## 3.", start)
    paths = [m.group("path") for line in text[start:end].splitlines() if (m := _ROW.match(line))]
    assert paths, "no module map rows found in section 2"
    return paths


def _shipped_packages() -> set[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in include}


def test_every_mapped_folder_exists_and_holds_python() -> None:
    missing = [p for p in _module_map() if not any((ROOT / p).glob("*.py"))]
    assert not missing, f"docs/architecture.md maps folders without Python code: {missing}"


def test_every_shipped_package_is_mapped() -> None:
    mapped = {p.split("/")[0] for p in _module_map()}
    unmapped = sorted(_shipped_packages() - mapped)
    assert not unmapped, f"packages missing from docs/architecture.md section 2: {unmapped}"
