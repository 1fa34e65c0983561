"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks:``).

The descriptor registry page is generated at build time from
:func:`hybridtmd.descriptors.list_descriptors`, so the table is the code's own list (names,
units, definitions, references) and can never drift from it. A page asks for it with the marker
``<!-- descriptor-registry -->``.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARKER = "<!-- descriptor-registry -->"


def _cell(value: object) -> str:
    """One Markdown table cell: pipes escaped, line breaks flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ").strip()


def _yes(flag: object) -> str:
    return "yes" if bool(flag) else "no"


def descriptor_registry_markdown() -> str:
    """The registry as Markdown: a count per family, then one row per descriptor."""
    from hybridtmd.descriptors import list_descriptors

    table = list_descriptors()
    counts = table.groupby("family", sort=False).agg(
        n=("name", "size"), default=("default", "sum"), invariant=("resolution_invariant", "sum")
    )
    lines = ["| family | descriptors | in the default set | resolution-invariant |", "|---|---|---|---|"]
    lines += [f"| `{family}` | {row.n} | {row.default} | {row.invariant} |" for family, row in counts.iterrows()]
    lines += [
        f"| **all** | {len(table)} | {int(table['default'].sum())} | {int(table['resolution_invariant'].sum())} |",
        "",
        "| name | family | unit | default | resolution-invariant | definition | reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        invariant = _yes(row.resolution_invariant)
        if not row.resolution_invariant and row.scale_note:
            invariant += f" ({_cell(row.scale_note)})"
        lines.append(
            f"| `{row.name}` | {row.family} | {_cell(row.unit)} | {_yes(row.default)} | {invariant} "
            f"| {_cell(row.definition)} | {_cell(row.reference)} |"
        )
    return "\n".join(lines) + "\n"


def on_config(config, **kwargs):
    """Import hybridtmd from the checkout being documented, installed or not."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, descriptor_registry_markdown())
