"""A griffe extension for the documentation site (``mkdocs.yml``: mkdocstrings' ``extensions``).

The docstrings use Sphinx roles (``:func:`hybridtmd.io.load_image```, ``:class:`~.AFMImage```),
which Python's ``help()`` and IDEs show as written but Markdown does not know: mkdocstrings would
print the role markup as text. This extension rewrites each role as inline code with the name
Sphinx would show (the last component after ``~``, else the target as written, leading dots
dropped), so the API pages read like the rest of the site. Nothing else in the docstring changes.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

#: ``:role:`target``` for the roles the docstrings use (Python domain and ``:ref:``)
ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const|ref|term):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")


def plain_role(match: re.Match[str]) -> str:
    """Inline code for one role: ``:func:`~a.b.c``` -> `` `c` ``, ``:mod:`.paper``` -> `` `paper` ``,
    ``:ref:`text <target>``` -> `` `text` ``."""
    tilde, target, explicit = match.group(1), match.group(2).strip(), match.group(3)
    if explicit:  # ``:role:`text <target>```: Sphinx shows the text
        return f"`{target}`"
    shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
    return f"`{shown}`"


def plain_roles(text: str) -> str:
    """Every Sphinx role in ``text`` as inline code (:func:`plain_role`)."""
    return ROLE.sub(plain_role, text)


class SphinxRolesAsCode(Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
