"""Edits: the in-memory record and reading/validating edit files in the supported layouts."""

from wiseedit.edits.layouts import to_edit_record
from wiseedit.edits.reader import read_edits
from wiseedit.edits.record import EditRecord, LocalityProbe, PortabilityProbe

__all__ = ["EditRecord", "LocalityProbe", "PortabilityProbe", "read_edits", "to_edit_record"]
