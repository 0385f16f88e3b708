"""Training and evaluation of SE networks and their plain twins (paper §5): configuration and recipes, the
crash-safe training loop (one or many processes), evaluation, prediction and seed-averaged comparisons.

>>> import senet
>>> cfg = senet.TrainConfig.from_recipe("fmnist-fast", model="se_resnet20", epochs=1)  # doctest: +SKIP
>>> result = senet.train(cfg)                                                         # doctest: +SKIP
>>> result.test_acc, result.run_dir                                                   # doctest: +SKIP
"""

from .compare import Comparison, compare, paired_differences
from .config import TrainConfig, find_recipe, list_recipes
from .evaluation import EvalResult, Inputs, evaluate, predict
from .trainer import NonFiniteLossError, RunResult, train

__all__ = [
    "Comparison",
    "EvalResult",
    "Inputs",
    "NonFiniteLossError",
    "RunResult",
    "TrainConfig",
    "compare",
    "evaluate",
    "find_recipe",
    "list_recipes",
    "paired_differences",
    "predict",
    "train",
]
