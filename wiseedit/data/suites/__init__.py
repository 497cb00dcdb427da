"""The real-data evaluation suites, gzip-compressed; see PROVENANCE.md and wiseedit.evaluation.suites."""
