"""selfmis.quantize: distil a tiny Lead-I student, export ONNX, convert to int8 TFLite, validate, bundle.

Heavy imports (torch, TensorFlow, onnx) happen inside the functions that need them.
Public entry points::

    selfmis.quantize.cli.main(argv)                 # `selfmis quantize ...`
    selfmis.quantize.pipeline.run_pipeline(...)     # the whole chain, returns a report dict
    selfmis.quantize.tflite_predict(bundle)         # predict_fn over preprocessed windows
"""
from .predict import tflite_predict, torch_predict

__all__ = ["tflite_predict", "torch_predict"]
