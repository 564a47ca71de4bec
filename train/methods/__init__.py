"""One module per method family; ``TRAINERS[method](data, cfg, state) -> model``.

- ``supervised``: ``twelve_lead`` (upper bound, SelfMIS teacher), ``scratch``, and fine-tuning
- ``selfmis``: self-alignment to a 12-lead teacher (``teachers``: loading, cross-fitting, targets)
- ``contrastive``: ``simclr``; ``generative``: Lead I -> 12-lead reconstruction
- ``probes``: linear probes and the ``random`` floor
"""
from selfmis.train.methods.contrastive import train_simclr
from selfmis.train.methods.generative import train_generative
from selfmis.train.methods.probes import train_random
from selfmis.train.methods.selfmis import train_selfmis
from selfmis.train.methods.supervised import train_scratch, train_twelve_lead

TRAINERS = {"selfmis": train_selfmis, "scratch": train_scratch, "simclr": train_simclr,
            "generative": train_generative, "twelve_lead": train_twelve_lead, "random": train_random}

__all__ = ["TRAINERS"]
