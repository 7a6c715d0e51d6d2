# Sphinx configuration of the imagestore.upload docs site (built by docs/build-site.sh).
# The module pages come from antsibull-docs; the guides are the Markdown files of docs/.

project = "imagestore.upload"
copyright = "imagestore.upload contributors"
title = "imagestore.upload"
html_short_title = "imagestore.upload"

extensions = ["sphinx_antsibull_ext", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3
pygments_style = "ansible"
highlight_language = "YAML+Jinja"
html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False
# Links into docs.ansible.com (common return values, configuration) cannot be resolved offline.
suppress_warnings = ["ref.ref", "myst.xref_missing"]
exclude_patterns = ["_build"]
