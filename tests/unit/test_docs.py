"""The documents stay true to the repository: README opens with the two commands, every relative
link reaches a file (and a heading in it), and every `runctl get` tree they show is one the
renderer really prints (the recorded runs of test_cli_render, whatever their namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench/README.md",
        ROOT / "deploy/helm/runctl/README.md"]
RENDERED = {path.read_text().replace("Run:      rec/", "Run:      data/")
            for path in (Path(__file__).parent / "runs").glob("*.txt")}
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_readme_opens_with_the_two_commands() -> None:
    assert (ROOT / "README.md").read_text().startswith(
        "# runctl\n\n```sh\n"
        "make demo    # runs runctl for real: a local control plane, the CRDs, the operator, "
        "an example run\n"
        "make test    # runs the linters, the type checker and every test (unit, property, "
        "integration)\n```\n")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(doc: Path) -> None:
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if target.startswith(("http://", "https://")):
            continue
        file, _, heading = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.name}: {target}"
        if heading:
            assert heading in anchors(path), f"{doc.name}: {target}"


@pytest.mark.parametrize("doc", [ROOT / "README.md", ROOT / "docs/guide.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_run_tree_shown_is_one_the_renderer_prints(doc: Path) -> None:
    trees = [block for block in FENCE.findall(doc.read_text()) if block.startswith("Run:")]
    assert trees
    for tree in trees:
        assert tree in RENDERED, tree
