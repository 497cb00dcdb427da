"""RECIPE: retrieval-augmented continuous prompts for lifelong editing (docs/recipe.md).

This package holds what editing and inference need: ``config`` (settings and presets), ``encoder``
(sentence encoder and pooling), ``heads`` (MLP_K, MLP_Q, MLP_P, sentinel), ``networks`` (all trained
parts together), ``checkpoint`` (reading a meta-trained checkpoint), ``reference`` and ``rows`` (the
encoder stored by what training changed from the pretrained one), ``store`` and ``scan`` (keys and
prompts of the edits, retrieval), ``prefix`` (prompt injection behind ``model.forward``), ``method``
(the EditingMethod). Meta-training lives apart, in :mod:`wiseedit.recipe.training`.

Usage::

    import wiseedit
    run = wiseedit.train_recipe("world", "world-train-x8-invented")   # = wiseedit.recipe.training.run.train
    wiseedit.edit("world", "edits.jsonl", method="recipe", options={"checkpoint": str(run.checkpoint)})

or, on models already loaded::

    from wiseedit.recipe import RecipeConfig
    from wiseedit.recipe.training import meta_train
    meta_train(llm, tok, "all-MiniLM-L6-v2", train_edits, RecipeConfig(), "ckpt", steps=5000)
    method = method_class("recipe").create(llm, tok, {"checkpoint": "ckpt"})
    method.apply(edits)
"""

from wiseedit.recipe.config import DEFAULT_ENCODER, RecipeConfig

__all__ = ["DEFAULT_ENCODER", "RecipeConfig", "load_networks"]


def __getattr__(name: str):
    # lazy, so that importing the config does not import transformers
    if name == "load_networks":
        from wiseedit.recipe.checkpoint import load_networks

        return load_networks
    raise AttributeError(name)
