"""Model bundles: a ``.tflite`` file and its model card, read and written here only.

A bundle is a directory::

    model.tflite   the converted model
    card.json      the model card (:class:`ModelCard`)

The training side (``selfmis.quantize``) writes bundles with :func:`write_bundle`;
the runtime, the evaluator and the deployment tools read them with
:func:`load_bundle`, which verifies the file's sha256 against the card and
refuses a card that does not describe this runtime's contract.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .preprocess import PreprocessSpec

__all__ = [
    "CARD_FORMAT", "CARD_VERSION", "TensorSpec", "ModelCard", "Bundle", "BundleError",
    "write_bundle", "load_bundle", "sha256_file",
]

CARD_FORMAT = "selfmis-model-card"
CARD_VERSION = 1
CARD_NAME = "card.json"
MODEL_NAME = "model.tflite"


class BundleError(ValueError):
    """A bundle that is missing, corrupt or inconsistent; the message names the path."""


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
    metrics: dict = field(default_factory=dict)    # measured, with data/split/seed named inside
    params: int = 0
    file_size: int = 0
    sha256: str = ""
    versions: dict = field(default_factory=dict)   # torch/onnx/onnx2tf/tensorflow used
    training: dict = field(default_factory=dict)   # data, split, seed, teacher checkpoint
    micro: dict = field(default_factory=dict)      # TFLite Micro: measured arena, parity with LiteRT
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

    @classmethod
    def from_dict(cls, d: dict, where: str = "card") -> "ModelCard":
        if d.get("format") != CARD_FORMAT:
            raise BundleError(f"{where}: not a SelfMIS model card (format={d.get('format')!r})")
        if int(d.get("format_version", 0)) > CARD_VERSION:
            raise BundleError(f"{where}: card format_version {d['format_version']} is newer than "
                              f"this runtime understands ({CARD_VERSION}); upgrade selfmis-edge")
        missing = [k for k in ("name", "lead", "labels", "preprocessing", "input", "output")
                   if k not in d]
        if missing:
            raise BundleError(f"{where}: model card lacks {missing}")
        d = dict(d)
        try:
            d["input"], d["output"] = TensorSpec(**d["input"]), TensorSpec(**d["output"])
        except TypeError as exc:
            raise BundleError(f"{where}: malformed tensor spec ({exc})") from None
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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
        raw = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{card_path}: unreadable model card ({exc})") from None
    card = ModelCard.from_dict(raw, where=str(card_path))
    bundle = Bundle(directory, card)
    model = bundle.model_path
    if not model.is_file():
        raise BundleError(f"{model}: model file named by the card is missing")
    if verify:
        with open(model, "rb") as fh:
            head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"TFL3":
            raise BundleError(f"{model}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        digest = sha256_file(model)
        if card.sha256 and digest != card.sha256:
            raise BundleError(f"{model}: sha256 {digest[:12]}... does not match the card's "
                              f"{card.sha256[:12]}...; the model and card do not belong together")
    return bundle
