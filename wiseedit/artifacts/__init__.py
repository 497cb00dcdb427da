"""The artifact format: a delta directory (config, tensors, audit log) written atomically, loaded safely.

See :mod:`wiseedit.artifacts.delta` for the layout and :mod:`wiseedit.artifacts.atomic` for the
write protocol and its crash window.
"""

from wiseedit.artifacts.atomic import atomic_directory, atomic_write_text, backup_path
from wiseedit.artifacts.delta import Delta, check_delta_base, load_delta, save_delta
from wiseedit.artifacts.location import default_delta_dir, sanitise_name
from wiseedit.artifacts.reading import CONFIG_FILE, EDITS_FILE, FORMAT_VERSION, TENSORS_FILE, short_hash

__all__ = [
    "CONFIG_FILE",
    "EDITS_FILE",
    "FORMAT_VERSION",
    "TENSORS_FILE",
    "Delta",
    "atomic_directory",
    "atomic_write_text",
    "backup_path",
    "check_delta_base",
    "default_delta_dir",
    "load_delta",
    "sanitise_name",
    "save_delta",
    "short_hash",
]
