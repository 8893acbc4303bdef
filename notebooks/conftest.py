"""nbval settings for the notebooks: what to compare, and a tidy environment."""

import os

# Widget views and HTML (tables, progress bars) carry random ids and styling that change
# between runs; their meaning is asserted inside the notebooks instead.
SKIP_MIME = ("text/html", "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")

os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def pytest_collection_modifyitems(items):
    for item in items:
        parent = getattr(item, "parent", None)
        if parent is not None and hasattr(parent, "skip_compare"):
            parent.skip_compare = tuple(set(parent.skip_compare) | set(SKIP_MIME))
