"""RECIPE: retrieval-augmented continuous prompts for lifelong editing (recipe.md).

Layout: ``config`` (settings and presets), ``encoder`` (sentence encoder and pooling), ``heads`` (MLP_K,
MLP_Q, MLP_P, sentinel), ``networks`` (all trained parts together), ``data`` and ``losses`` and
``train`` (meta-training on loaded models), ``sources`` (named train splits and edit files, leak
filtering), ``run`` (meta-training a model by name: ``wiseedit train-recipe``), ``checkpoint`` (its
files), ``store`` (keys and prompts of the edits, retrieval), ``prefix`` (prompt injection behind
``model.forward``), ``method`` (the EditingMethod).

Usage::

    import wiseedit
    run = wiseedit.train_recipe("world", "world-train", steps=3000)      # = wiseedit.recipe.run.train
    wiseedit.edit("world", "edits.jsonl", method="recipe", options={"checkpoint": str(run.checkpoint)})

or, on models already loaded::

    from wiseedit.recipe import RecipeConfig, train_recipe
    train_recipe(llm, tok, "all-MiniLM-L6-v2", train_edits, RecipeConfig(), "ckpt", steps=20000)
    method = method_class("recipe").create(llm, tok, {"checkpoint": "ckpt"})
    method.apply(edits)
"""

from wiseedit.recipe.config import DEFAULT_ENCODER, RecipeConfig

__all__ = ["DEFAULT_ENCODER", "RecipeConfig", "train_recipe", "load_networks"]


def __getattr__(name: str):
    # lazy, so that importing the config does not import transformers
    if name == "train_recipe":
        from wiseedit.recipe.train import train_recipe

        return train_recipe
    if name == "load_networks":
        from wiseedit.recipe.checkpoint import load_networks

        return load_networks
    raise AttributeError(name)
