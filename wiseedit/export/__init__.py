"""Exporting an edited model as one shareable folder: ``wiseedit export``.

- :mod:`~wiseedit.export.exporter`: :func:`export_model`, what the command runs;
- :mod:`~wiseedit.export.selfcontained`: base weights + the delta + a modeling file (routed, exact);
- :mod:`~wiseedit.export.merged`: a WISE delta baked into the weights (plain checkpoint, no router);
- :mod:`~wiseedit.export.measure`: the Rel/Loc figures measured before writing;
- :mod:`~wiseedit.export.card`: the ``README.md`` model card;
- :mod:`~wiseedit.export.detect`: recognising an exported folder (used by :func:`wiseedit.load`);
- :mod:`~wiseedit.export.remote` and ``modeling_template.py``: ``trust_remote_code=True`` loading.

Nothing is imported here, so that :mod:`wiseedit.session` can use :mod:`~wiseedit.export.detect`
without a circular import.
"""
