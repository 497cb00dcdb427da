"""RECIPE's meta-training (docs/recipe.md, section 3), apart from what inference needs.

``run`` (meta-training a base model by name: ``wiseedit train-recipe``, :func:`train`, its settings
:class:`TrainSettings`), ``loop`` (:func:`meta_train`, the training loop on loaded models), ``sources``
(named train splits and edit files, leak filtering), ``data`` (training items and their token
batches), ``batches`` (which edits make up a step), ``losses``, ``bank`` (the negatives bank),
``averaging`` (the moving average of the weights), ``checkpoint`` (writing checkpoints, and the state
that resuming reads).
"""

__all__ = ["TrainSettings", "meta_train", "train"]


def __getattr__(name: str):
    # lazy, so that importing the settings does not import torch and transformers
    if name == "meta_train":
        from wiseedit.recipe.training.loop import meta_train

        return meta_train
    if name == "train":
        from wiseedit.recipe.training.run import train

        return train
    if name == "TrainSettings":
        from wiseedit.recipe.training.settings import TrainSettings

        return TrainSettings
    raise AttributeError(name)
