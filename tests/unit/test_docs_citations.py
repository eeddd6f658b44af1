"""Citations in code and docs point at documents (and sections) that exist in this repository.

The code cites its design reasons as `docs/design.md §N` (several sections may follow one
mention: `docs/design.md §10.3, §11.2`). Every cited section must be a numbered heading of
docs/design.md, every `docs/….md` named anywhere must exist, and nothing may cite the
out-of-tree notes the project was started from.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
SOURCE_DIRS = ("vadedge", "train", "export", "calibration", "tests", "examples")
CITATION = re.compile(r"docs/design\.md((?:[ ,;]*§\d+(?:\.\d+)*)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
DOC_PATH = re.compile(r"\bdocs/[\w./-]+\.md\b")
# notes outside the repository that code once cited; these words must not come back
OUT_OF_TREE = re.compile(r"papers-digest|reference-code|DESIGN principle|DESIGN\.md|ecosystem\.md|shared/docs/")


def _files() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    files += list((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
    return sorted(p for p in files if p.resolve() != Path(__file__).resolve())


def _sections() -> set[str]:
    return set(HEADING.findall(DESIGN.read_text(encoding="utf-8")))


def cited_sections(text: str) -> list[str]:
    return [s for m in CITATION.finditer(text) for s in SECTION.findall(m.group(1))]


def test_citation_pattern_reads_lists_and_stops_at_prose():
    text = "x (docs/design.md §10.3, §11.2) and docs/design.md §6; see Eq. 9 § of the paper §2"
    assert cited_sections(text) == ["10.3", "11.2", "6"]


def test_design_doc_has_the_numbered_principles_and_sections():
    sections = _sections()
    assert {str(n) for n in range(1, 12)} <= sections
    assert {"10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "11.1"} <= sections


def test_every_cited_design_section_exists():
    sections = _sections()
    missing = [
        (str(p.relative_to(ROOT)), s)
        for p in _files()
        for s in cited_sections(p.read_text(encoding="utf-8"))
        if s not in sections
    ]
    assert not missing, f"citations of docs/design.md sections that do not exist: {missing}"


def test_code_cites_design_doc():
    """The repointing really happened: the code cites the design doc, not nothing."""
    n = sum(len(cited_sections(p.read_text(encoding="utf-8"))) for p in _files() if p.suffix == ".py")
    assert n >= 15


def test_cited_docs_exist():
    missing = sorted(
        {
            (str(p.relative_to(ROOT)), d)
            for p in _files()
            for d in DOC_PATH.findall(p.read_text(encoding="utf-8"))
            if not (ROOT / d).is_file()
        }
    )
    assert not missing, f"references to documents that are not in the repository: {missing}"


def test_no_citation_of_out_of_tree_notes():
    hits = [
        f"{p.relative_to(ROOT)}: {line.strip()}"
        for p in _files()
        for line in p.read_text(encoding="utf-8").splitlines()
        if OUT_OF_TREE.search(line)
    ]
    assert not hits, "citations of notes that are not in the repository:\n" + "\n".join(hits)
