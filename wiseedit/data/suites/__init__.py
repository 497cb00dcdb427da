"""The real-data suite files, gzip-compressed; see PROVENANCE.md and wiseedit.data.shipped."""
