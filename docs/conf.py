"""Sphinx configuration of the sklfm documentation (built by ``make docs``)."""

import os
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

import sklfm

# The gallery's networks are small: one thread is fastest on small machines and
# keeps a shared CI machine responsive (SKLFM_DOCS_THREADS overrides).
_THREADS = int(os.environ.get("SKLFM_DOCS_THREADS", "1"))
torch.set_num_threads(_THREADS)
threadpool_limits(_THREADS)

project = "sklfm"
author = "the sklfm developers"
copyright = "the sklfm developers"
version = release = sklfm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
# examples/anomaly_detection.py is a script, not a page; the gallery writes auto_examples/.
exclude_patterns = ["_build", "examples", "auto_examples/*.ipynb", "**.py.md5"]

# --- API pages: autosummary + numpydoc ---
autosummary_generate = True
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False  # the class template lists the members itself
numpydoc_xref_param_type = False

# --- Markdown (docs/benchmarks.md, written by the benchmark scripts) ---
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# --- gallery ---
sphinx_gallery_conf = {
    "examples_dirs": str(Path(__file__).parents[1] / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
}

# --- HTML ---
html_theme = "pydata_sphinx_theme"
html_title = f"sklfm {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"changelog": [], "getting_started": []}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_{method}_request on every estimator class; they
    # belong to its metadata routing, documented by scikit-learn.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
