"""selfmis.quantize: distil a tiny Lead-I student, export ONNX, convert to int8 TFLite, validate, bundle.

Heavy imports (torch, TensorFlow, onnx) happen inside the functions that need them.
Public entry points::

    selfmis.quantize.cli.main(argv)                 # `selfmis quantize ...`
    selfmis.quantize.pipeline.run_pipeline(...)     # the whole chain, returns a report dict
    selfmis.quantize.tflite_predict(bundle)         # predict_fn over preprocessed windows
    selfmis.quantize.evaluate_bundle(bundle, ...)   # `selfmis evaluate --model BUNDLE`
"""
from .predict import tflite_predict, torch_predict


def evaluate_bundle(*args, **kwargs):
    """See :func:`selfmis.quantize.bundle_eval.evaluate_bundle` (imported lazily: it needs pandas/wfdb)."""
    from .bundle_eval import evaluate_bundle as _impl

    return _impl(*args, **kwargs)


__all__ = ["tflite_predict", "torch_predict", "evaluate_bundle"]
