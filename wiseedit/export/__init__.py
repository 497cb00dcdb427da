"""Exporting an edited model as one shareable folder: ``wiseedit export``.

- :mod:`~wiseedit.export.exporter`: :func:`export_model`, what the command runs;
- :mod:`~wiseedit.export.selfcontained`: base weights + the delta + a modeling file (routed, exact);
- :mod:`~wiseedit.export.merged`: a WISE delta baked into the weights (plain checkpoint, no router);
- :mod:`~wiseedit.export.measure`: the Rel/Loc figures measured before writing;
- :mod:`~wiseedit.export.card`: the ``README.md`` model card;
- :mod:`~wiseedit.export.remote` and ``modeling_template.py``: ``trust_remote_code=True`` loading.

The names of the files an export writes, and how :func:`wiseedit.load` recognises an exported
folder, are part of the artifact format (:mod:`wiseedit.artifacts.exported`). Nothing is imported here.
"""
