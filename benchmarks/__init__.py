"""Benchmarks: latency, throughput, memory, size, energy and accuracy, side by side (``selfmis bench``).

Public API::

    run.main(argv)                 # ``selfmis bench [--quick]``: everything, JSON + Markdown + PNG in results/
    latency, streaming, coldstart, energy, accuracy   # one module per measurement
    stats.summarize / percentile   # one definition of the summary statistics

Results live in ``benchmarks/results/`` (committed), each with the command that regenerates it.
"""
