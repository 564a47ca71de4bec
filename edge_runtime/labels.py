"""What a card's labels mean, for the people and systems the outlets serve.

A card's labels are PTB-XL diagnostic statements (``IMI``, ``ASMI``, ...) and
superclasses (``MI``, ``NORM``). Three questions about them are answered here,
once, for the live page, MQTT / Home Assistant and LSL:

* :func:`describe` -- plain words for a label: the PTB-XL statement description
  (``scp_statements.csv``, shipped with the package in :mod:`selfmis.sample_data`),
  or for a superclass the PTB-XL paper's name for it (Wagner et al. 2020, Table 1);
* :func:`is_mi_class` -- the MI superclass itself or a statement whose
  ``diagnostic_class`` is ``MI`` (the rule ``train/data.py`` builds the MI label
  with, as in the PTB-XL benchmark);
* :func:`is_alarm` -- whether the label going *on* is an alarm. ``NORM`` (a normal
  ECG) going on is good news, never an alarm; every other label is one.
"""
from __future__ import annotations

import csv
import functools

from selfmis.sample_data import BUNDLED_PTBXL

__all__ = ["describe", "is_mi_class", "is_alarm", "glossary", "NORMAL_LABELS"]

#: labels whose "on" state means a normal ECG (not an alarm)
NORMAL_LABELS = frozenset({"NORM"})

# PTB-XL's diagnostic superclasses (Wagner et al. 2020, Table 1); "any wall": MI is the union
# of every MI statement, whatever the wall.
_SUPERCLASSES = {
    "MI": "myocardial infarction (heart attack), any wall",
    "NORM": "normal ECG",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}


@functools.lru_cache(maxsize=1)
def _statements() -> dict:
    """code -> (description, diagnostic_class) from the shipped ``scp_statements.csv``."""
    path = BUNDLED_PTBXL / "scp_statements.csv"
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    return {(r.get("") or "").strip(): ((r.get("description") or "").strip(),
                                        (r.get("diagnostic_class") or "").strip()) for r in rows}


def describe(label: str) -> str:
    """Plain words for ``label`` ("" when it is not a PTB-XL statement or superclass)."""
    if label in _SUPERCLASSES:
        return _SUPERCLASSES[label]
    return _statements().get(label, ("", ""))[0]


def is_mi_class(label: str) -> bool:
    """The MI superclass, or a statement PTB-XL files under the MI diagnostic class."""
    return label == "MI" or _statements().get(label, ("", ""))[1] == "MI"


def is_alarm(label: str) -> bool:
    """Whether ``label`` being on is an alarm (everything but a normal ECG)."""
    return label not in NORMAL_LABELS


def glossary(labels) -> dict:
    """``{"labels": {label: description}, "mi_subtypes": [...], "alarm_labels": [...]}`` for a card's
    labels, in card order (what the live page shows beside each label)."""
    labels = list(labels)
    return {"labels": {l: describe(l) for l in labels},
            "mi_subtypes": [l for l in labels if l != "MI" and is_mi_class(l)],
            "alarm_labels": [l for l in labels if is_alarm(l)]}
