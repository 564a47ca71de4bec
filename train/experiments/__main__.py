"""``python -m selfmis.train.experiments --phase ...`` (see ``cli.py``)."""
import sys

from selfmis.train.experiments.cli import main

sys.exit(main())
