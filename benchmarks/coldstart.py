"""Process-level cold start, run in a fresh interpreter by :mod:`selfmis.benchmarks.run`.

``python -m selfmis.benchmarks.coldstart RUNTIME PATH_OR_KIND THREADS XNNPACK`` prints one
JSON line: import, load and first-inference seconds measured inside the process
(the parent adds the interpreter start-up by timing the whole process).
"""
from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    runtime, target, threads, xnnpack = argv[0], argv[1], int(argv[2]), argv[3] == "1"
    kind_path = target.split("=", 1)
    import numpy as np

    x = np.random.default_rng(0).standard_normal(500).astype(np.float32)
    t_imp0 = time.perf_counter()
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
        from selfmis.benchmarks.artefacts import load_torch_model
        t_imp1 = time.perf_counter()
        model = load_torch_model(kind_path[0], kind_path[1] if len(kind_path) > 1 else None)
        t_load = time.perf_counter()
        with torch.inference_mode():
            model(torch.from_numpy(x).reshape(1, 1, -1))
    elif runtime == "onnxruntime":
        import onnxruntime as ort

        t_imp1 = time.perf_counter()
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads, o.log_severity_level = threads, 1, 3
        sess = ort.InferenceSession(target, o, providers=["CPUExecutionProvider"])
        t_load = time.perf_counter()
        inp = sess.get_inputs()[0]
        sess.run(None, {inp.name: x.reshape([d if isinstance(d, int) else 1 for d in inp.shape])})
    elif runtime == "tflite":
        from selfmis.benchmarks.latency import tflite_interpreter, tflite_runner
        from selfmis.edge_runtime.interpreter import interpreter_backend

        interpreter_backend()  # imports ai_edge_litert (or tflite_runtime): part of the import phase
        t_imp1 = time.perf_counter()
        interp = tflite_interpreter(target, threads, xnnpack)
        fn = tflite_runner(interp, x)
        t_load = time.perf_counter()
        fn()
    else:
        print(json.dumps({"error": f"unknown runtime {runtime}"}))
        return 2
    t_first = time.perf_counter()
    rss_mb = None
    try:  # VmHWM is per address space, so it starts afresh at exec (ru_maxrss would not)
        with open("/proc/self/status") as fh:
            rss_mb = next(int(l.split()[1]) / 1024.0 for l in fh if l.startswith("VmHWM"))
    except (OSError, StopIteration, ValueError):
        pass
    print(json.dumps({"before_import_s": t_imp0 - T0, "import_s": t_imp1 - t_imp0, "load_s": t_load - t_imp1,
                      "first_s": t_first - t_load, "in_process_s": t_first - T0, "rss_peak_mb": rss_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
