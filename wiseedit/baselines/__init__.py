"""The baselines of the tables, one package each: :mod:`~wiseedit.baselines.grace` and
:mod:`~wiseedit.baselines.ft_l`; what they share is in :mod:`~wiseedit.baselines.common` (module lookup,
an edit's tokens and loss, the call tracker) and :mod:`~wiseedit.baselines.single_module` (the method
shell around one edited module)."""
