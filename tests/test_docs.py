"""The front door and the documentation site (issue 29), checked without building the site:
README stays one screen-ful, every relative link of README and docs/ leads to a file, the site's
navigation names existing pages, every API page documents a module that exists, and the commands
README prints are commands with options the CLI has. ``make docs`` (mkdocs --strict) checks the
rest: anchors, the generated registry table, docstrings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer.main

from hybridtmd.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 150

#: [text](target) and ![alt](target); the target ends at the first space or closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _site_pages() -> list[Path]:
    """Every Markdown file of docs/ except helpers' drafts (``notes-*.md``, not built; the lead
    folds them into the pages)."""
    return sorted(p for p in DOCS.rglob("*.md") if not p.name.startswith("notes-"))


def relative_links(markdown: str) -> list[str]:
    """The relative link targets of a Markdown text (code blocks and inline code left out)."""
    text = FENCE.sub("", markdown)
    text = re.sub(r"^(    |\t).*$", "", text, flags=re.M)  # indented code blocks
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", t, flags=re.I)]


def test_relative_links_are_found_in_markdown_text():
    text = "[a](x.md#s) ![b](img/p.png) [c](https://e.org) [d](#top) `[e](no.md)`\n\n    [f](code.md)\n"
    assert relative_links(text) == ["x.md#s", "img/p.png"]


def test_readme_is_one_screenful():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; at most {MAX_README_LINES} (the rest goes to docs/)"


@pytest.mark.parametrize("page", [README, *_site_pages()], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    missing = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


def _mkdocs_config() -> str:
    return (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def _nav_pages() -> list[str]:
    nav = _mkdocs_config().split("\nnav:\n", 1)[1]
    return re.findall(r"^\s*- (?:[^:\n]+: )?\"?([\w./-]+\.md)\"?\s*$", nav, flags=re.M)


def test_the_navigation_names_every_page_and_only_existing_ones():
    nav = _nav_pages()
    assert len(nav) == len(set(nav)), "a page is twice in the nav"
    assert not [p for p in nav if not (DOCS / p).is_file()], "the nav names missing pages"
    built = {str(p.relative_to(DOCS)) for p in _site_pages()}
    assert built - set(nav) == set(), "pages of docs/ that no nav entry reaches"
    for page in ("descriptors.md", "scale.md", "napari.md", "benchmarks.md", "architecture.md", "api/index.md"):
        assert page in nav


def test_notes_drafts_are_excluded_from_the_build():
    assert re.search(r"exclude_docs:\s*\|\s*\n\s+notes-\*\.md", _mkdocs_config())


def test_the_descriptor_page_asks_for_the_generated_registry():
    from hybridtmd.descriptors import list_descriptors

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "tools" / "docs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    MARKER, descriptor_registry_markdown = hooks.MARKER, hooks.descriptor_registry_markdown
    assert MARKER in (DOCS / "descriptors.md").read_text(encoding="utf-8")
    table = descriptor_registry_markdown()
    names = list_descriptors()["name"]
    rows = [line for line in table.split("| name | family |", 1)[1].splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(names)


def test_every_api_page_documents_an_existing_module():
    pages = sorted((DOCS / "api").glob("*.md"))
    assert pages
    for page in pages:
        modules = re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), flags=re.M)
        assert modules, f"{page.name} documents nothing"
        for module in modules:
            assert importlib.util.find_spec(module) is not None, f"{page.name}: no module {module}"


def _readme_commands() -> list[list[str]]:
    lines = re.findall(r"^    hybridtmd (.+?)(?:\s+#.*)?$", README.read_text(encoding="utf-8"), flags=re.M)
    return [line.split() for line in lines]


def test_the_readme_quick_start_uses_commands_and_options_the_cli_has():
    commands = typer.main.get_command(app).commands
    printed = _readme_commands()
    assert [c[0] for c in printed] == ["train", "evaluate", "explain", "predict"]
    for words in printed:
        options = {opt for param in commands[words[0]].params for opt in (*param.opts, *param.secondary_opts)}
        unknown = [w for w in words[1:] if w.startswith("-") and w not in options]
        assert not unknown, f"hybridtmd {words[0]} has no option {unknown}"


def test_sphinx_roles_become_inline_code_on_the_api_pages():
    """The docstrings' Sphinx roles would print as raw markup through mkdocstrings: the site's
    griffe extension (named in mkdocs.yml) shows each as the name Sphinx would show."""
    pytest.importorskip("griffe")
    assert "tools/griffe_roles.py:SphinxRolesAsCode" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    spec = importlib.util.spec_from_file_location("griffe_roles", ROOT / "tools" / "griffe_roles.py")
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    text = ("See :func:`hybridtmd.io.load_image`, :class:`~hybridtmd.io.AFMImage`, :mod:`.paper`, "
            ":meth:`~.Dataset.load` and :ref:`the guide <guide>`; ``code`` and `x` stay.")
    assert roles.plain_roles(text) == ("See `hybridtmd.io.load_image`, `AFMImage`, `paper`, `load` and "
                                       "`the guide`; ``code`` and `x` stay.")
