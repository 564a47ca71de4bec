"""``--plot FILE.png``: the replayed ECG with detected beats and per-beat scores.

matplotlib is imported here only, when a plot is asked for (it costs ~0.5 s and
~30 MB that a gateway streaming live never pays).
"""
from __future__ import annotations

import numpy as np

__all__ = ["plot_run"]


def plot_run(path, pipeline, title: str = "") -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = pipeline.fs
    if pipeline.signal:
        t = np.concatenate([t0 + np.arange(len(s)) / fs for s, t0 in zip(pipeline.signal, pipeline.signal_t0)])
        x = np.concatenate(pipeline.signal)
    else:
        t = x = np.zeros(0)
    labels = pipeline.labels
    has_p = any("p" in b for b in pipeline.beat_log)
    fig, axes = plt.subplots(2 if has_p else 1, 1, figsize=(12, 5 if has_p else 3), sharex=True,
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(t, x, lw=0.7, color="k")
    bt = np.array([b["t"] for b in pipeline.beat_log])
    if len(bt) and len(t):
        ax.plot(bt, np.interp(bt, t, x), "rv", ms=5, label="R peaks")
        ax.legend(loc="upper right")
    ax.set_ylabel("mV")
    ax.set_title(title or "SelfMIS edge run")
    if has_p:
        ax2 = axes[1, 0]
        # the five most probable labels keep the panel readable with 11-label models
        peak = {lab: max(b["p"][lab] for b in pipeline.beat_log if "p" in b) for lab in labels}
        shown = sorted(labels, key=lambda lab: -peak[lab])[:5]
        for i, lab in enumerate(labels):
            if lab not in shown:
                continue
            pts = [(b["t"], b["p"][lab]) for b in pipeline.beat_log if "p" in b]
            ax2.plot(*zip(*pts), "o-", ms=3, label=lab)
            thr = pipeline.decider.thresholds[i]
            ax2.axhline(thr, ls=":", lw=0.8, color=f"C{i}")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("beat probability")
        ax2.legend(loc="upper right", ncol=min(6, len(labels)))
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
