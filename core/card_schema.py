"""The model card's schema, checked in one place when a card is loaded (:func:`selfmis.bundle.load_bundle`).

A card is data from a file someone may have edited by hand, copied half-way or
crafted. Before the runtime feeds a model with it, every field it acts on is
checked here, and a card that fails is refused (:class:`~selfmis.bundle.BundleError`,
exit code 3) with the card's path and the JSON path of the field:

==========================  =====================================================================
field                       rule
==========================  =====================================================================
``name``, ``lead``          non-empty strings
``labels``                  1..1024 distinct non-empty strings; as many as the model's outputs
                            (``output.shape[-1]``)
``preprocessing``           ``fs`` within :mod:`selfmis.limits` (50 Hz..10 kHz); a sane band
                            ``0 < low_hz < high_hz < fs/2``; ``window_s`` in (0, 60] s,
                            ``beat_offset_s`` within the window; ``standardise`` ``zscore``
``input`` / ``output``      shapes of positive integers, dtype int8/uint8/float32, finite
                            scale >= 0, integer zero point; the input holds one window
``thresholds``              known labels -> finite probabilities in [0, 1]
``calibration``             known labels; finite ``a``/``b``; isotonic tables as ``bundle`` says
``operating_points``        objects whose ``thresholds`` obey the rule above; the default exists
``model_file``              a plain file name inside the bundle (no directory, no ``..``)
``sha256``                  required: 64 hex digits (an old card without one: ``selfmis bundle
                            reseal DIR`` computes it from the model file the user trusts)
``file_size``, ``params``   non-negative integers
``kernels``                 absent, or one of ``default``, ``builtin``, ``reference``: the LiteRT
                            kernels its thresholds were validated with
==========================  =====================================================================
"""
from __future__ import annotations

import math
import re

from .limits import LimitError, check_rate

__all__ = ["validate_card", "RESEAL_HINT", "KERNEL_MODES"]

RESEAL_HINT = ("re-seal it with `selfmis bundle reseal {dir}` if you trust its model file "
               "(it records the file's sha256 and size in the card), or re-export the bundle")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_DTYPES = ("int8", "uint8", "float32")
#: The interpreter kernels a card's ``kernels`` may name (re-exported as ``selfmis.bundle.KERNEL_MODES``;
#: the runtime maps each to a LiteRT op resolver): ``reference`` gives the same int8 outputs on every CPU;
#: ``default`` (XNNPACK) and ``builtin`` differ by an LSB here and there between x86 and arm64.
KERNEL_MODES = ("default", "builtin", "reference")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Checker:
    def __init__(self, where: str, err):
        self.where, self.err = where, err

    def fail(self, path: str, msg: str):
        raise self.err(f"{self.where}: {path}: {msg}")

    def str_(self, d: dict, key: str, required: bool = True) -> None:
        v = d.get(key)
        if v is None and not required:
            return
        if not isinstance(v, str) or not v.strip():
            self.fail(key, f"must be a non-empty string, got {v!r:.80}")

    def probs(self, table, path: str, labels: list) -> None:
        if not isinstance(table, dict):
            self.fail(path, "must be an object {label: probability}")
        for label, p in table.items():
            if label not in labels:
                self.fail(f"{path}.{label}", f"not one of the card's labels {labels}")
            if not _num(p) or not 0.0 <= p <= 1.0:
                self.fail(f"{path}.{label}", f"must be a finite probability in [0, 1], got {p!r}")

    def tensor(self, t, path: str) -> None:
        if not isinstance(t, dict):
            self.fail(path, "must be an object")
        shape = t.get("shape")
        if not isinstance(shape, list) or not shape or len(shape) > 8 \
                or not all(_int(s) and 0 < s <= 1 << 24 for s in shape):
            self.fail(f"{path}.shape", f"must be a list of 1..8 positive integers, got {shape!r:.80}")
        if t.get("dtype") not in _DTYPES:
            self.fail(f"{path}.dtype", f"must be one of {_DTYPES}, got {t.get('dtype')!r:.40}")
        if not _num(t.get("scale", 0.0)) or t.get("scale", 0.0) < 0:
            self.fail(f"{path}.scale", f"must be a finite number >= 0, got {t.get('scale')!r}")
        if not _int(t.get("zero_point", 0)) or abs(t.get("zero_point", 0)) > 1 << 16:
            self.fail(f"{path}.zero_point", f"must be an integer, got {t.get('zero_point')!r}")
        if t.get("dtype") != "float32" and not t.get("scale"):
            self.fail(f"{path}.scale", "a quantised tensor needs a positive scale")


def _preprocessing(c: _Checker, pp, input_shape: list) -> None:
    if not isinstance(pp, dict):
        c.fail("preprocessing", "must be an object")
    for key in ("fs", "low_hz", "high_hz", "window_s", "beat_offset_s"):
        if key in pp and not _num(pp[key]):
            c.fail(f"preprocessing.{key}", f"must be a finite number, got {pp[key]!r}")
    fs = pp.get("fs", 100.0)
    try:
        check_rate(fs, "", "")
    except LimitError as exc:
        c.fail("preprocessing.fs", str(exc))
    low, high = pp.get("low_hz", 0.5), pp.get("high_hz", 40.0)
    if not 0.0 < low < high < fs / 2:
        c.fail("preprocessing", f"band low_hz={low!r}, high_hz={high!r} must satisfy 0 < low < high < fs/2 "
                                f"({fs / 2:g} Hz)")
    window, offset = pp.get("window_s", 5.0), pp.get("beat_offset_s", 4.5)
    if not 0.0 < window <= 60.0:
        c.fail("preprocessing.window_s", f"must be in (0, 60] s, got {window!r}")
    if not 0.0 <= offset <= window:
        c.fail("preprocessing.beat_offset_s", f"must be within the window [0, {window:g}] s, got {offset!r}")
    if pp.get("standardise", "zscore") != "zscore":
        c.fail("preprocessing.standardise", f"this runtime knows 'zscore', got {pp.get('standardise')!r:.40}")
    w = int(round(window * fs))
    if input_shape and w not in input_shape:
        c.fail("input.shape", f"{input_shape} does not hold one window of {w} samples "
                              f"(window_s={window:g} x fs={fs:g})")


def _calibration(c: _Checker, cal, labels: list) -> None:
    if not isinstance(cal, dict):
        c.fail("calibration", "must be an object {label: {...}}")
    for label, e in cal.items():
        if label not in labels:
            c.fail(f"calibration.{label}", f"not one of the card's labels {labels}")
        if not isinstance(e, dict):
            c.fail(f"calibration.{label}", "must be an object")
        for k in ("a", "b", "temperature"):
            if k in e and not _num(e[k]):
                c.fail(f"calibration.{label}.{k}", f"must be a finite number, got {e[k]!r}")
        for k in ("x", "y"):
            if k in e and (not isinstance(e[k], list) or not all(_num(v) for v in e[k])):
                c.fail(f"calibration.{label}.{k}", "must be a list of finite numbers")


def validate_card(d, where: str, err) -> None:
    """Raise ``err`` (naming ``where`` and the field) unless card dict ``d`` obeys the schema above."""
    c = _Checker(where, err)
    if not isinstance(d, dict):
        raise err(f"{where}: a model card is a JSON object")
    for key in ("name", "lead"):
        c.str_(d, key)
    labels = d.get("labels")
    if not isinstance(labels, list) or not 1 <= len(labels) <= 1024 \
            or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        c.fail("labels", "must be a list of 1..1024 distinct non-empty strings")
    for key in ("input", "output"):
        c.tensor(d.get(key), key)
    n_out = d["output"]["shape"][-1]
    if n_out != len(labels):
        c.fail("labels", f"{len(labels)} labels but the model has {n_out} outputs (output.shape "
                         f"{d['output']['shape']})")
    _preprocessing(c, d.get("preprocessing"), d["input"]["shape"])
    if not isinstance(d.get("output_kind", "logits"), str) \
            or d.get("output_kind", "logits") not in ("logits", "sigmoid", "probabilities"):
        c.fail("output_kind", f"must be logits, sigmoid or probabilities, got {d.get('output_kind')!r:.40}")
    c.probs(d.get("thresholds", {}), "thresholds", labels)
    _calibration(c, d.get("calibration", {}), labels)
    points = d.get("operating_points", {})
    if not isinstance(points, dict):
        c.fail("operating_points", "must be an object {name: {thresholds: ...}}")
    for name, op in points.items():
        if not isinstance(op, dict):
            c.fail(f"operating_points.{name}", "must be an object")
        c.probs(op.get("thresholds", {}), f"operating_points.{name}.thresholds", labels)
    default = d.get("default_operating_point", "")
    if not isinstance(default, str):
        c.fail("default_operating_point", f"must be a string, got {default!r:.40}")
    if default and default not in points:
        c.fail("default_operating_point", f"{default!r:.40} is not one of the card's operating points "
                                          f"{list(points)}")
    mf = d.get("model_file", "model.tflite")
    if not isinstance(mf, str) or not mf or "/" in mf or "\\" in mf or mf in (".", "..") or "\x00" in mf:
        c.fail("model_file", f"must be a plain file name inside the bundle, got {mf!r:.80}")
    for key in ("file_size", "params"):
        if key in d and (not _int(d[key]) or d[key] < 0):
            c.fail(key, f"must be a non-negative integer, got {d[key]!r:.40}")
    sha = d.get("sha256")
    if not sha:
        raise err(f"{where}: the card records no sha256 of its model file (an older card): nothing "
                  f"proves the model is the one the card describes; " + RESEAL_HINT.format(dir=_dir(where)))
    if not isinstance(sha, str) or not _SHA.match(sha):
        c.fail("sha256", f"must be 64 lower-case hex digits, got {sha!r:.80}")
    if d.get("kernels", "") not in ("",) + KERNEL_MODES:
        c.fail("kernels", f"must be one of {KERNEL_MODES} (the kernels its thresholds were validated with), "
                          f"got {d.get('kernels')!r:.40}")
    for key in ("metrics", "versions", "training", "micro"):
        if key in d and not isinstance(d[key], dict):
            c.fail(key, "must be an object")


def _dir(where: str) -> str:
    return where[: -len("/card.json")] if where.endswith("/card.json") else where
