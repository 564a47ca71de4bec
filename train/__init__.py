"""Training: the PTB-XL data layer, SelfMIS and its baselines, evaluation.

Public API (``selfmis train``, ``selfmis data`` and ``selfmis evaluate --checkpoint`` are the commands)::

    data.load_split(path, split=..., folds=..., fs=...)    # PTB-XL records + labels (numpy)
    data.PTBXL, data.DEFAULT_TASKS, data.LEADS, data.resolve_data_root
    evaluate.score_records / score_predictions / auroc / bootstrap_ci   # AUROC/AUPRC with CIs
    trainer.train(config), trainer.METHODS, trainer.DEFAULTS, trainer.split_folds   # (torch)
    models.ResNet1d, checkpoint.load_model                                            # (torch)

The numpy-only modules (data, crops, evaluate) are imported here; the torch ones (trainer, loop, methods,
models, losses, checkpoint) when used, so ``selfmis data summary`` does not pay for torch.
"""
from . import crops, data, evaluate

__all__ = ["crops", "data", "evaluate"]
