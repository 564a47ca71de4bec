"""SelfMIS Edge: single-lead MI detection from training to the wearable gateway.

This package (the repository's ``core/`` folder) is the base layer every other part builds on:
numpy-only contracts that the training side and the gateway must agree on.

- :mod:`selfmis.preprocess` -- resample, band-pass, standardise, window: what every model sees.
- :mod:`selfmis.bundle` -- the model bundle (``model.tflite`` + ``card.json``), read and written here only.
- :mod:`selfmis.readers` -- ECG records from files (WFDB, CSV) with numpy alone.
- :mod:`selfmis.protocol` -- the wire codec between a wearable and the gateway (frames, CRC).
- :mod:`selfmis.ble_profile` -- the BLE GATT service that carries those frames, and its MTU arithmetic.
- :mod:`selfmis.sequence` -- lost, duplicate and stale frames from the DATA sequence number.
- :mod:`selfmis.ascii_sketch` -- the text lines hobby sketches print (plain, Serial Plotter, lead-off, headers).
- :mod:`selfmis.exit_codes` -- the exit codes of every command, defined once.
- :mod:`selfmis.runtime_config` -- the gateway's ``runtime.json``.
- :mod:`selfmis.simulate` -- the one simulated wearable (signal, ADC, faults, wire bytes).
- :mod:`selfmis.sample_data` -- nine real PTB-XL records shipped with the package.
- :mod:`selfmis.cli` -- the ``selfmis`` command.

Sub-packages, one per top-level folder, imports flowing one way (checked by import-linter)::

    base (selfmis.*) <- edge_runtime <- firmware_bridge
    base (selfmis.*) <- train <- quantize <- benchmarks

- :mod:`selfmis.train` (``train/``): PTB-XL data layer, SelfMIS and baselines, evaluation.
- :mod:`selfmis.quantize` (``quantize/``): distillation, ONNX, TFLite int8, parity checks.
- :mod:`selfmis.edge_runtime` (``edge_runtime/``): the gateway runtime ``edge-run`` (numpy + LiteRT).
- :mod:`selfmis.firmware_bridge` (``firmware_bridge/``): virtual device transports, C framing, firmware, deployment.
- :mod:`selfmis.benchmarks` (``benchmarks/``): latency, throughput, memory, energy, accuracy.
"""
__version__ = "0.1.0"
