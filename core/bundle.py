"""Model bundles: a ``.tflite`` file and its model card, read and written here only.

A bundle is a directory::

    model.tflite   the converted model
    card.json      the model card (:class:`ModelCard`)

The training side (``selfmis.quantize``) writes bundles with :func:`write_bundle`;
the runtime, the evaluator and the deployment tools read them with
:func:`load_bundle`, which verifies the file's sha256 against the card and
refuses a card that does not describe this runtime's contract.

:func:`read_tflite_graph` / :func:`model_operators` are the one reader of a
``.tflite`` file's operators and tensors (for the TFLite Micro export, the MAC
count and the converter's checks), built on the ``tflite`` package: the
flatbuffer classes generated from TensorFlow Lite's ``schema.fbs``. It is
imported only when called (``pip install 'selfmis-edge[deploy]'``), so this
module stays numpy-only at import time.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .card_schema import KERNEL_MODES, validate_card
from .exit_codes import CodedError, ExitCode
from .preprocess import PreprocessSpec

__all__ = [
    "CARD_FORMAT", "CARD_VERSION", "TensorSpec", "ModelCard", "Bundle", "BundleError",
    "write_bundle", "load_bundle", "reseal_bundle", "sha256_file", "LEGACY_OPERATING_POINT", "CALIBRATION_METHODS",
    "calibrated_probability", "KERNEL_MODES",
    "TFLiteTensor", "TFLiteOperator", "TFLiteGraph", "read_tflite_graph", "model_operators",
]

#: What an operating point is called on a card that predates them: its ``thresholds``
#: were chosen on validation with Youden's J, which is what ``balanced`` means on newer cards.
LEGACY_OPERATING_POINT = "balanced"

#: What a card's ``calibration`` entry may name (label -> {"method": .., ...}); see
#: :func:`calibrated_probability`, the one definition of what each means.
CALIBRATION_METHODS = ("platt", "temperature", "isotonic")

CARD_FORMAT = "selfmis-model-card"
CARD_VERSION = 1
CARD_NAME = "card.json"
_MAX_CARD_BYTES = 16 << 20
MODEL_NAME = "model.tflite"


class BundleError(CodedError, ValueError):
    """A bundle that is missing, corrupt or inconsistent; the message names the path (exit code 3)."""

    exit_code = ExitCode.MODEL


@dataclass
class TensorSpec:
    """One model input or output as the interpreter sees it."""

    name: str
    shape: list
    dtype: str                 # "int8", "uint8" or "float32"
    layout: str = ""           # inputs: "NWC" (1, W, 1) or "NCW" (1, 1, W)
    scale: float = 0.0         # quantisation; 0.0 for float tensors
    zero_point: int = 0


@dataclass
class ModelCard:
    """Everything a runtime needs to feed a model and read its outputs, plus provenance."""

    name: str
    lead: str
    labels: list                                   # output order, e.g. ["MI", "IMI", ...]
    preprocessing: dict                            # PreprocessSpec.to_dict()
    input: TensorSpec
    output: TensorSpec
    output_kind: str = "logits"                    # sigmoid gives per-label probabilities
    thresholds: dict = field(default_factory=dict)  # label -> probability, chosen on validation
    # label -> {"method": "platt"|"temperature", "a": .., "b": ..}: p = sigmoid(a * logit + b), or
    # {"method": "isotonic", "x": [logits], "y": [probabilities]}: a piecewise-linear table; fitted on
    # validation only (see calibrated_probability); labels without an entry keep sigmoid(logit).
    # Absent on older cards.
    calibration: dict = field(default_factory=dict)
    # name -> {"thresholds": {label: calibrated probability}, "rule": .., "validation": .., "test": ..}
    operating_points: dict = field(default_factory=dict)
    default_operating_point: str = ""
    metrics: dict = field(default_factory=dict)    # measured, with data/split/seed named inside
    params: int = 0
    file_size: int = 0
    sha256: str = ""
    versions: dict = field(default_factory=dict)   # torch/onnx/onnx2tf/tensorflow used
    training: dict = field(default_factory=dict)   # data, split, seed, teacher checkpoint
    micro: dict = field(default_factory=dict)      # TFLite Micro: measured arena, parity with LiteRT
    # The LiteRT kernels (KERNEL_MODES) its thresholds, calibration and metrics were validated with; the
    # runtime runs these unless told otherwise, and warns when told otherwise. "" on older cards.
    kernels: str = ""
    description: str = ""
    created: str = ""
    model_file: str = MODEL_NAME
    format: str = CARD_FORMAT
    format_version: int = CARD_VERSION

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.preprocessing)

    def to_dict(self) -> dict:
        return asdict(self)

    def probabilities(self, logits) -> np.ndarray:
        """Logits (..., labels) in card order -> calibrated probabilities (the one definition).

        Per label, the card's ``calibration`` entry as :func:`calibrated_probability` reads it
        (Platt / temperature scaling, or an isotonic table); a label the card does not calibrate
        gets the plain sigmoid, which is all an older card ever meant. Vectorised over the
        sigmoid-family labels: the runtime calls this on every beat.
        """
        z = np.asarray(logits, dtype=np.float64)
        a, b, tables = self._calibration_arrays()
        p = 1.0 / (1.0 + np.exp(-(z * a + b)))
        for j, (x, y) in tables.items():
            p[..., j] = np.interp(z[..., j], x, y)
        return p

    def _calibration_arrays(self):
        cached = self.__dict__.get("_calibration_cache")
        if cached is None:
            a = np.ones(len(self.labels))
            b = np.zeros(len(self.labels))
            tables = {}
            for j, label in enumerate(self.labels):
                c = self.calibration.get(label)
                if not c:
                    continue
                if c.get("method", "platt") == "isotonic":
                    tables[j] = (np.asarray(c["x"], np.float64), np.asarray(c["y"], np.float64))
                else:
                    a[j], b[j] = float(c["a"]), float(c.get("b", 0.0))
            cached = self.__dict__["_calibration_cache"] = (a, b, tables)
        return cached

    def operating_point(self, name: str | None = None) -> tuple:
        """(name, {label: probability threshold}) of ``name`` (default: the card's default).

        An older card without operating points offers its Youden ``thresholds`` as
        :data:`LEGACY_OPERATING_POINT`. Raises ``BundleError`` naming the ones that exist.
        """
        points = self.operating_points or {LEGACY_OPERATING_POINT: {"thresholds": dict(self.thresholds)}}
        name = name or self.default_operating_point or (
            LEGACY_OPERATING_POINT if LEGACY_OPERATING_POINT in points else next(iter(points)))
        if name not in points:
            raise BundleError(f"model card {self.name!r} has no operating point {name!r} "
                              f"(it has: {', '.join(points)})")
        return name, dict(points[name].get("thresholds", {}))

    @classmethod
    def from_dict(cls, d: dict, where: str = "card") -> "ModelCard":
        """The card in ``d``, checked against the schema (:mod:`selfmis.card_schema`) first."""
        if not isinstance(d, dict) or d.get("format") != CARD_FORMAT:
            raise BundleError(f"{where}: not a SelfMIS model card (format="
                              f"{d.get('format') if isinstance(d, dict) else None!r:.60})")
        version = d.get("format_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"{where}: format_version {version!r:.40} is not an integer")
        if version > CARD_VERSION:
            raise BundleError(f"{where}: card format_version {d['format_version']} is newer than "
                              f"this runtime understands ({CARD_VERSION}); upgrade selfmis-edge")
        missing = [k for k in ("name", "lead", "labels", "preprocessing", "input", "output")
                   if k not in d]
        if missing:
            raise BundleError(f"{where}: model card lacks {missing}")
        validate_card(d, where, BundleError)
        d = dict(d)
        try:
            d["input"], d["output"] = TensorSpec(**d["input"]), TensorSpec(**d["output"])
        except TypeError as exc:
            raise BundleError(f"{where}: malformed tensor spec ({exc})") from None
        for label, c in (d.get("calibration") or {}).items():
            _check_calibration(c, f"{where}: calibration of {label!r}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def calibrated_probability(z, c) -> np.ndarray:
    """One label's calibrated probability of logits ``z`` under its card entry ``c`` (None: sigmoid).

    * ``platt``: ``sigmoid(a z + b)`` (Platt, "Probabilistic outputs for support vector machines", 1999);
    * ``temperature``: the same with ``b = 0`` and ``a = 1 / T`` (Guo et al., "On calibration of modern
      neural networks", ICML 2017);
    * ``isotonic``: the isotonic regression of the label on the logit (Zadrozny & Elkan, KDD 2002),
      stored as a table of knots ``x`` (logits, non-decreasing) and ``y`` (probabilities), linear
      between knots and constant beyond the ends (``numpy.interp``).

    Every one is monotone non-decreasing in ``z``, so it commutes with the runtime's rolling median.
    """
    z = np.asarray(z, dtype=np.float64)
    if not c:
        return 1.0 / (1.0 + np.exp(-z))
    _check_calibration(c, "calibration")
    if c.get("method", "platt") == "isotonic":
        return np.interp(z, np.asarray(c["x"], np.float64), np.asarray(c["y"], np.float64))
    return 1.0 / (1.0 + np.exp(-(float(c["a"]) * z + float(c.get("b", 0.0)))))


def _check_calibration(c, where: str) -> None:
    """A calibration entry this runtime can apply, or a BundleError that says why not."""
    method = c.get("method", "platt") if isinstance(c, dict) else None
    if method not in CALIBRATION_METHODS:
        raise BundleError(f"{where}: unknown calibration method {method!r} (this runtime knows "
                          f"{', '.join(CALIBRATION_METHODS)}); upgrade selfmis-edge")
    if method == "isotonic":
        x, y = np.asarray(c.get("x", []), np.float64), np.asarray(c.get("y", []), np.float64)
        if x.ndim != 1 or len(x) < 2 or x.shape != y.shape or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) \
                or not (np.all(np.isfinite(x)) and np.all((y >= 0) & (y <= 1))):
            raise BundleError(f"{where}: an isotonic table needs >= 2 knots, x and y of equal length, both "
                              "non-decreasing, y within [0, 1]")
    elif not all(isinstance(c.get(k, 0.0), (int, float)) for k in ("a", "b")) or "a" not in c:
        raise BundleError(f"{where}: {method} scaling needs numbers 'a' (and 'b')")


@dataclass
class Bundle:
    directory: Path
    card: ModelCard

    @property
    def model_path(self) -> Path:
        return self.directory / self.card.model_file


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_bundle(directory, model, card: ModelCard) -> Bundle:
    """Write ``model`` (a path or bytes) and ``card`` into ``directory``.

    Size and sha256 are computed here, never trusted from the caller.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / card.model_file
    if isinstance(model, (bytes, bytearray)):
        target.write_bytes(bytes(model))
    elif Path(model).resolve() != target.resolve():
        shutil.copyfile(model, target)
    card.file_size = target.stat().st_size
    card.sha256 = sha256_file(target)
    card.created = card.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    tmp = directory / (CARD_NAME + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, directory / CARD_NAME)  # a reader never sees half a card
    return Bundle(directory, card)


def reseal_bundle(directory) -> Bundle:
    """Record the model file's sha256 and size in the card of ``directory`` (``selfmis bundle reseal``).

    For a card written before sha256 was required, by someone who trusts the model file
    next to it. Every other field is kept as it is and must pass the schema.
    """
    directory = Path(directory)
    card_path = directory / CARD_NAME
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{card_path}: unreadable model card ({str(exc)[:200]})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{card_path}: a model card is a JSON object")
    mf = raw.get("model_file", MODEL_NAME)
    model = directory / mf if isinstance(mf, str) and "/" not in mf and mf not in ("", ".", "..") else None
    if model is None or not model.is_file():
        raise BundleError(f"{card_path}: model file {mf!r:.80} is not in the bundle")
    raw["sha256"], raw["file_size"] = sha256_file(model), model.stat().st_size
    ModelCard.from_dict(raw, where=str(card_path))  # the rest must pass as it is
    tmp = directory / (CARD_NAME + ".tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    os.replace(tmp, card_path)
    return load_bundle(directory)


def load_bundle(path, verify: bool = True) -> Bundle:
    """Read a bundle directory (or its ``card.json`` or ``model.tflite``).

    The shipped bundles live with the runtime: :func:`selfmis.edge_runtime.models.default_bundle_dir`.
    """
    if path is None:
        raise BundleError("no model bundle given")
    path = Path(path)
    directory = path.parent if path.suffix == ".json" else path
    card_path = path if path.suffix == ".json" else path / CARD_NAME
    if path.suffix == ".tflite":
        directory, card_path = path.parent, path.parent / CARD_NAME
    if not card_path.is_file():
        raise BundleError(f"{card_path}: no model card (a bundle is a directory with "
                          f"{CARD_NAME} and {MODEL_NAME})")
    try:
        if card_path.stat().st_size > _MAX_CARD_BYTES:
            raise BundleError(f"{card_path}: {card_path.stat().st_size} bytes is no model card "
                              f"(at most {_MAX_CARD_BYTES})")
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{card_path}: unreadable model card ({str(exc)[:200]})") from None
    card = ModelCard.from_dict(raw, where=str(card_path))
    bundle = Bundle(directory, card)
    model = bundle.model_path
    if model.resolve().parent != Path(directory).resolve():  # a link out of the bundle
        raise BundleError(f"{card_path}: model_file {card.model_file!r} resolves outside the bundle")
    if not model.is_file():
        raise BundleError(f"{model}: model file named by the card is missing")
    if verify:
        with open(model, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise BundleError(f"{model}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        digest = sha256_file(model)
        if digest != card.sha256:
            size = os.path.getsize(model)
            if card.file_size and size != card.file_size:
                why = (f"the file has {size} bytes, the card records {card.file_size}: a truncated or "
                       "damaged copy, or a model from another bundle")
            else:
                why = ("same size as the card records, different content: the file was damaged or edited "
                       "after the bundle was written")
            raise BundleError(f"{model}: sha256 {digest[:12]}... does not match the card's "
                              f"{card.sha256[:12]}...: {why}; copy the bundle folder again from its source "
                              "(or re-export it)")
    return bundle


# --------------------------------------------------------------------------
# What is inside a .tflite: operators and tensors (schema.fbs via `tflite`)
# --------------------------------------------------------------------------

# bytes per element of the TensorType names numpy does not know; int4 packs two per byte
_ODD_ITEMSIZE = {"string": 0, "resource": 0, "variant": 0, "bfloat16": 2}


@dataclass(frozen=True)
class TFLiteTensor:
    index: int
    name: str
    shape: tuple        # as stored; -1 marks a dynamic dimension
    dtype: str          # TensorType name in lower case: "int8", "float32", ...
    nbytes: int         # dynamic dimensions counted as 1
    constant: bool      # backed by a non-empty buffer (weights, biases)
    variable: bool


@dataclass(frozen=True)
class TFLiteOperator:
    index: int          # execution order in its subgraph
    name: str           # BuiltinOperator name ("CONV_2D"), or a custom op's own name
    custom: bool
    version: int
    inputs: tuple       # tensor indices; -1 is an omitted optional input
    outputs: tuple


@dataclass
class TFLiteGraph:
    """The primary subgraph of a .tflite (what the interpreter runs) and the model's op names."""

    operators: list
    tensors: list
    inputs: list        # tensor indices
    outputs: list
    operator_names: list  # sorted, unique, over *all* subgraphs (WHILE/IF bodies need registering too)
    n_subgraphs: int
    description: str


def _tflite_schema():
    try:
        import tflite  # the flatbuffer classes of TensorFlow Lite's schema.fbs
    except ImportError:
        raise ImportError("reading a .tflite's operators needs the `tflite` package: "
                          "pip install 'selfmis-edge[deploy]' (or pip install tflite)") from None
    return tflite


def _enum_names(enum_class) -> dict:
    return {v: k for k, v in vars(enum_class).items() if k.isupper() and isinstance(v, int)}


def read_tflite_graph(model) -> TFLiteGraph:
    """Operators and tensors of ``model`` (a path or the file's bytes), as stored in the flatbuffer.

    Raises :class:`BundleError` (naming the file) for something that is not a
    readable TFLite flatbuffer.
    """
    where = "model" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
    data = bytes(model) if where == "model" else Path(model).read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError(f"{where}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    tfl = _tflite_schema()
    op_names, type_names = _enum_names(tfl.BuiltinOperator), _enum_names(tfl.TensorType)
    try:
        m = tfl.Model.GetRootAs(data, 0)

        def op_code(i):
            oc = m.OperatorCodes(i)
            code = oc.BuiltinCode()  # resolves the deprecated int8 field of old files
            if code == tfl.BuiltinOperator.CUSTOM:
                return (oc.CustomCode() or b"?").decode("utf-8", "replace"), True, oc.Version()
            return op_names.get(code, f"BUILTIN_{code}"), False, oc.Version()

        codes = [op_code(i) for i in range(m.OperatorCodesLength())]
        if m.SubgraphsLength() == 0:
            raise BundleError(f"{where}: the model has no subgraph")
        all_names = set()
        for g in range(m.SubgraphsLength()):
            sg = m.Subgraphs(g)
            all_names.update(codes[sg.Operators(k).OpcodeIndex()][0] for k in range(sg.OperatorsLength()))
        sg = m.Subgraphs(0)

        def has_data(b):  # buffer 0 is the empty sentinel; offset > 1: data stored after the flatbuffer
            buf = m.Buffers(b) if 0 < b < m.BuffersLength() else None
            return buf is not None and (buf.DataLength() > 0 or buf.Offset() > 1)

        tensors = []
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            shape = tuple(int(t.Shape(j)) for j in range(t.ShapeLength()))
            dtype = type_names.get(t.Type(), f"type{t.Type()}").lower()
            n = math.prod(max(1, d) for d in shape)
            if dtype == "int4":
                nbytes = (n + 1) // 2
            elif dtype in _ODD_ITEMSIZE or dtype.startswith("type"):  # "typeN": newer than the schema
                nbytes = n * _ODD_ITEMSIZE.get(dtype, 0)
            else:
                nbytes = n * np.dtype(dtype).itemsize
            tensors.append(TFLiteTensor(i, (t.Name() or b"").decode("utf-8", "replace"), shape, dtype,
                                        int(nbytes), has_data(t.Buffer()), bool(t.IsVariable())))
        operators = []
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            name, custom, version = codes[op.OpcodeIndex()]
            operators.append(TFLiteOperator(
                k, name, custom, version, tuple(int(op.Inputs(j)) for j in range(op.InputsLength())),
                tuple(int(op.Outputs(j)) for j in range(op.OutputsLength()))))
        return TFLiteGraph(
            operators=operators, tensors=tensors,
            inputs=[int(sg.Inputs(j)) for j in range(sg.InputsLength())],
            outputs=[int(sg.Outputs(j)) for j in range(sg.OutputsLength())],
            operator_names=sorted(all_names), n_subgraphs=m.SubgraphsLength(),
            description=(m.Description() or b"").decode("utf-8", "replace"))
    except BundleError:
        raise
    except Exception as exc:  # a damaged flatbuffer fails anywhere inside the generated readers
        raise BundleError(f"{where}: unreadable TFLite flatbuffer ({exc.__class__.__name__}: {exc})") from None


def model_operators(model) -> list:
    """Sorted operator names a ``.tflite`` uses (builtin names as LiteRT reports them, custom ops by name)."""
    return read_tflite_graph(model).operator_names
