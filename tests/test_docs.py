"""docs/method.md: every `§N` (or `§N.M`, `§N item M`) a comment or doc cites exists in it."""
from __future__ import annotations

import re

from tests.helpers import ROOT

CITE = re.compile(r"§ ?(\d+)(?:\.(\d+))?(?: item (\d+))?")
SOURCES = ("eercf_core", "pipelines", "schemas", "bench", "tests")


def _method() -> tuple[set[str], dict[str, set[int]]]:
    """(section numbers with a heading, section -> numbered items) of docs/method.md."""
    headings: set[str] = set()
    items: dict[str, set[int]] = {}
    current = ""
    for line in (ROOT / "docs" / "method.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{2,3} (\d+(?:\.\d+)?)\.? ", line)
        if heading:
            current = heading.group(1)
            headings.add(current)
            continue
        item = re.match(r"(\d+)\. ", line)
        if item and current:
            items.setdefault(current, set()).add(int(item.group(1)))
    return headings, items


def _citations() -> list[tuple[str, str]]:
    found = []
    paths = [p for source in SOURCES for p in (ROOT / source).rglob("*.py")]
    paths += [ROOT / "README.md"]
    for path in paths:
        for match in CITE.finditer(path.read_text(encoding="utf-8")):
            found.append((f"{path.relative_to(ROOT)}: {match.group(0)}", match.group(0)))
    return found


def test_every_cited_section_of_the_method_exists():
    headings, items = _method()
    citations = _citations()
    assert len(citations) > 40  # the code does cite the method
    missing = []
    for where, text in citations:
        section, sub, item = CITE.match(text).groups()
        if sub is not None and f"{section}.{sub}" in headings:
            continue
        if sub is not None and int(sub) in items.get(section, set()):
            continue  # §11.10: item 10 of §11, §13.5: item 5 of §13
        if sub is None and section in headings and (item is None
                                                    or int(item) in items.get(section, set())):
            continue
        missing.append(where)
    assert not missing, missing
