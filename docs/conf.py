"""Sphinx configuration for the portastreams documentation.

Build with ``nox -s docs`` (warnings are errors), or directly::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build works offline. Links into the Python, AnyIO and trio documentation
(intersphinx) need their inventories from the network, so they are only
enabled when ``PORTASTREAMS_DOCS_INTERSPHINX=1`` is set.
"""

from __future__ import annotations

import os

import portastreams
from portastreams import _public

# The public names say "portastreams" in their __module__; the source links
# and autodoc's member order come from the modules that define them.
_public.restore_defining_modules()

project = "portastreams"
author = "The portastreams developers"
copyright = "2026, The portastreams developers"
release = portastreams.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

if os.environ.get("PORTASTREAMS_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "anyio": ("https://anyio.readthedocs.io/en/stable", None),
        "trio": ("https://trio.readthedocs.io/en/stable", None),
    }

exclude_patterns = ["_build"]
templates_path: list[str] = []

default_role = "py:obj"
# Code blocks and literalincludes are Python unless they say otherwise.
highlight_language = "python3"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
# Show defaults as written (socket.AI_PASSIVE, anyio.TASK_STATUS_IGNORED),
# not as the reprs of their values.
autodoc_preserve_defaults = True
autodoc_default_options = {
    "show-inheritance": True,
    # Inherited plumbing, documented by Python and AnyIO.
    "exclude-members": "__new__, extra, extra_attributes",
}

html_theme = "furo"
html_title = f"portastreams {release}"
