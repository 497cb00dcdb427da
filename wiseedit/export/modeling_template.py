"""Loads this folder as the edited model: ``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)``.

Written by ``wiseedit export`` (self-contained form) as ``modeling_wiseedit.py``; ``config.json`` points
``auto_map.AutoModelForCausalLM`` at :class:`WiseeditForCausalLM`. This folder holds the unedited base
weights and the edits as a wiseedit delta (``wiseedit_delta/``); loading builds the base architecture
named in ``config.json`` with transformers' own code, checks the weights are the ones the delta was made
on, and attaches the delta. It needs the ``wiseedit`` package (``pip install wiseedit``); without
``trust_remote_code=True``, transformers loads the *unedited* base model from this folder.
"""

from wiseedit.export.remote import load_exported


class WiseeditForCausalLM:
    """Entry point for transformers' auto classes; ``from_pretrained`` returns the base architecture's
    own model class (e.g. ``LlamaForCausalLM``) with the edits attached (``model.wiseedit``)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        return load_exported(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def register_for_auto_class(cls, auto_class="AutoModelForCausalLM"):
        """Called by transformers after importing this file; nothing to record."""

    @classmethod
    def _from_config(cls, config, **kwargs):
        raise ValueError("an exported wiseedit model carries its edits in its folder: load it with "
                         "AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)")
