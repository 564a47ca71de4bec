"""The gateway runtime (``edge-run``): numpy + LiteRT, nothing from training.

Public API::

    TFLiteModel(bundle)            # a model bundle behind LiteRT (or tflite-runtime)
    Pipeline(model)                # chunks in -> beat, quality, decision events out
    sources.SerialSource / BleSource / ReplaySource / SimulatedSource   # one backend per transport
    Chunk, LinkEvent               # what a source yields
    Recorder                       # crash-safe recording of a stream (--record)
    JsonlWriter                    # JSON Lines on stdout
    default_bundle_dir()           # the shipped model

The contracts it shares with training live in the base layer: :mod:`selfmis.preprocess`,
:mod:`selfmis.bundle`, :mod:`selfmis.readers`, :mod:`selfmis.protocol`, :mod:`selfmis.runtime_config`.
"""
from .interpreter import TFLiteModel
from .models import default_bundle_dir
from .output import JsonlWriter
from .pipeline import Pipeline
from .recording import Recorder
from .stream import Chunk, LinkEvent

__all__ = ["TFLiteModel", "Pipeline", "Chunk", "LinkEvent", "Recorder", "JsonlWriter", "default_bundle_dir"]
