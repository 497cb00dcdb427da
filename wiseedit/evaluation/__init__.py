"""Evaluation: what is measured and how (docs/evaluation.md).

- :mod:`~wiseedit.evaluation.metrics` (on :mod:`wiseedit.tokens`): Rel, Gen, Loc,
  perplexity, OOD, generation accuracy, as pure functions of a model;
- :mod:`~wiseedit.evaluation.suites`: the suites (world, zsre, counterfact, hallucination, temporal, or
  an edit file);
- :mod:`~wiseedit.evaluation.protocol`: the lifelong protocol, one block of T edits at a time;
- :mod:`~wiseedit.evaluation.runner`: a whole run (methods x T x blocks), resumable
  (:mod:`~wiseedit.evaluation.store`) and shared between processes
  (:mod:`~wiseedit.evaluation.processes`); :mod:`~wiseedit.evaluation.audit`: a saved delta;
- :mod:`~wiseedit.evaluation.report`, :mod:`~wiseedit.evaluation.checks`, :mod:`~wiseedit.evaluation.plot`:
  ``results.json``, ``--fail-under``, ``--plot``.
"""
