"""SelfMIS Edge: single-lead MI detection from training to the wearable gateway.

Sub-packages (each is a top-level folder of the repository):

- :mod:`selfmis.train` (``train/``): PTB-XL data layer, SelfMIS training, evaluation.
- :mod:`selfmis.quantize` (``quantize/``): distillation, ONNX, TFLite int8.
- :mod:`selfmis.edge_runtime` (``edge_runtime/``): the gateway runtime (numpy + LiteRT).
- :mod:`selfmis.firmware_bridge` (``firmware_bridge/``): wire protocol, firmware, deployment.
- :mod:`selfmis.benchmarks` (``benchmarks/``): latency, memory, energy, accuracy.
"""
__version__ = "0.1.0"
