"""Run a bundle's TFLite model: LiteRT first, tflite-runtime where a device has only that.

No torch, no TensorFlow: ``ai_edge_litert`` (the maintained successor of
``tflite_runtime``, same API) or ``tflite_runtime``. The card's tensor specs
are checked against the interpreter's own, and inputs are quantised and
outputs dequantised with the interpreter's scale and zero point.

Kernels (``kernels=`` or the ``SELFMIS_TFLITE_KERNELS`` environment variable, so a
systemd unit can set it): ``default`` (LiteRT's optimised kernels, XNNPACK delegate),
``builtin`` (optimised built-in kernels, no delegate) or ``reference`` (LiteRT's
reference kernels: plain C++ with the same integer arithmetic on every CPU, so the
int8 outputs are identical on x86 and arm64; see benchmarks/results/pi/ for the cost).
Neither given (nor ``use_xnnpack=False``, which means ``builtin``): the kernels the
bundle's card says its thresholds were validated with (``card.kernels``; ``default`` on
an older card). Running other kernels than the card's is allowed (a benchmark may want
XNNPACK's speed) but logged as a warning: near a threshold, a decision may then differ
from the one the card's metrics describe.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from selfmis.bundle import KERNEL_MODES, Bundle, BundleError, load_bundle

from .models import default_bundle_dir

__all__ = ["interpreter_backend", "TFLiteModel", "sigmoid", "KERNELS", "KERNELS_ENV"]

KERNELS_ENV = "SELFMIS_TFLITE_KERNELS"
# kernels -> LiteRT OpResolverType member (None: the interpreter's default, XNNPACK on)
KERNELS = {"default": None, "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "reference": "BUILTIN_REF"}
assert tuple(KERNELS) == KERNEL_MODES  # the card's vocabulary (selfmis.card_schema) and this map are one list
log = logging.getLogger("selfmis.edge_runtime")
_warned: set = set()  # (bundle, kernels) pairs already warned about: a 100-device gateway warns once


def interpreter_backend():
    """(Interpreter class, OpResolverType or None, backend name)."""
    try:
        from ai_edge_litert import interpreter as mod
        name = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod  # type: ignore
            name = "tflite-runtime"
        except ImportError:
            raise ImportError("no TFLite interpreter: pip install 'selfmis-edge[edge]' "
                              "(ai-edge-litert), or tflite-runtime on older devices") from None
    return mod.Interpreter, getattr(mod, "OpResolverType", None), name


def sigmoid(x):
    """Logit -> uncalibrated probability (the scale of the card's legacy ``thresholds``)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x)))


class TFLiteModel:
    """A bundle's model, ready for one window at a time (LiteRT, or tflite-runtime where only it exists).

    Parameters
    ----------
    bundle : str, os.PathLike, Bundle or None
        A bundle directory (``card.json`` + model) or a loaded :class:`~selfmis.bundle.Bundle`;
        None: the shipped default.
    num_threads : int
        Interpreter threads (default 1).
    use_xnnpack : bool
        Use the XNNPACK delegate where the interpreter has it (False: ``builtin`` kernels).
    kernels : str or None
        ``default``, ``builtin`` or ``reference``; None: $SELFMIS_TFLITE_KERNELS, else the card's.
    warn : bool
        Log a warning now when the kernels are not the ones the card was validated with
        (False: call :meth:`warn_kernels` later).

    Raises
    ------
    BundleError
        The bundle is missing or invalid (its card, its checksum), or the model's tensors do not
        match the card (exit 3 in ``edge-run``).
    ImportError
        Neither ai-edge-litert nor tflite-runtime is installed.

    Example
    -------
    >>> import numpy as np
    >>> from selfmis.preprocess import preprocess_window
    >>> m = TFLiteModel()                                   # the shipped default bundle
    >>> w = preprocess_window(np.zeros(m.window, np.float32), m.card.spec)
    >>> m.predict_proba(w[None]).shape == (1, len(m.card.labels))
    True
    """

    #: public hook for conformance probes (``benchmarks/pi_probe.py``): callables given the raw
    #: output tensor of every invoke, before dequantisation, by every instance
    raw_output_hooks: list = []

    def __init__(self, bundle=None, num_threads: int = 1, use_xnnpack: bool = True,
                 kernels: str | None = None, warn: bool = True):
        if bundle is None:
            bundle = default_bundle_dir()
        self.bundle: Bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        card = self.bundle.card
        Interpreter, Resolver, self.backend = interpreter_backend()
        kwargs = {"model_path": str(self.bundle.model_path), "num_threads": num_threads}
        self.kernels, self.kernels_from = self._choose_kernels(kernels, card.kernels, use_xnnpack)
        if KERNELS[self.kernels] is not None:
            if Resolver is None or not hasattr(Resolver, KERNELS[self.kernels]):
                raise BundleError(f"{self.backend} cannot select {self.kernels} kernels "
                                   f"(no OpResolverType.{KERNELS[self.kernels]}); upgrade it")
            kwargs["experimental_op_resolver_type"] = getattr(Resolver, KERNELS[self.kernels])
        try:
            self.interpreter = Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{self.bundle.model_path}: the interpreter refused the model ({exc})") from None
        self.card = card
        self._in = self._match(self.interpreter.get_input_details(), card.input, "input")
        self._out = self._match(self.interpreter.get_output_details(), card.output, "output")
        self.window = int(card.spec.window_samples)
        shape = list(self._in["shape"])
        if int(np.prod(shape)) != self.window:
            raise BundleError(f"{self.bundle.directory}: model input {shape} does not hold a "
                              f"{self.window}-sample window as the card says")
        self._in_shape = shape
        self._in_q, self._out_q = self._qparams(self._in), self._qparams(self._out)
        if warn:  # False: the caller logs it later (edge-run silences stderr while LiteRT loads)
            self.warn_kernels()

    def _choose_kernels(self, kernels, validated: str, use_xnnpack: bool) -> tuple:
        """(kernels, where that came from): ``kernels=``, else $SELFMIS_TFLITE_KERNELS, else ``builtin``
        when ``use_xnnpack`` is false, else the card's, else ``default``."""
        env = os.environ.get(KERNELS_ENV)
        chosen, source = ((kernels, "kernels=") if kernels else (env, KERNELS_ENV) if env
                          else ("builtin", "use_xnnpack=False") if not use_xnnpack
                          else (validated, "the card") if validated else ("default", "the default"))
        if chosen not in KERNELS:
            raise BundleError(f"kernels {chosen!r} (from {source}): expected one of {', '.join(KERNELS)}")
        self.kernels_warning = "" if not validated or chosen == validated else (
            f"{self.bundle.directory}: its thresholds and calibration were validated with {validated} kernels, "
            f"but {chosen} kernels run (from {source}): int8 outputs may differ by an LSB and a decision near a "
            f"threshold may differ from the validated one; unset {KERNELS_ENV} to run the card's kernels")
        return chosen, source

    def warn_kernels(self) -> None:
        """Log :attr:`kernels_warning` (other kernels than the card's), once per bundle and kernels."""
        key = (str(self.bundle.directory), self.kernels)
        if self.kernels_warning and key not in _warned:
            _warned.add(key)
            log.warning("%s", self.kernels_warning)

    def _match(self, details, spec, what):
        """Pick the tensor the card names (by name, else by shape) and check dtype/quantisation."""
        by_name = [d for d in details if d["name"] == spec.name]
        by_shape = [d for d in details if list(d["shape"]) == list(spec.shape)]
        cands = by_name or by_shape
        if len(cands) != 1:
            raise BundleError(f"{self.bundle.directory}: card {what} {spec.name!r} {spec.shape} "
                              f"matches {len(cands)} of the model's {what}s "
                              f"{[(d['name'], list(d['shape'])) for d in details]}")
        d = cands[0]
        if np.dtype(d["dtype"]).name != spec.dtype:
            raise BundleError(f"{self.bundle.directory}: card says {what} dtype {spec.dtype}, "
                              f"model has {np.dtype(d['dtype']).name}")
        scale, zp = d["quantization"]
        if spec.dtype in ("int8", "uint8") and (abs(scale - spec.scale) > 1e-6 * max(1.0, abs(scale))
                                                or int(zp) != int(spec.zero_point)):
            raise BundleError(f"{self.bundle.directory}: card {what} quantisation "
                              f"({spec.scale}, {spec.zero_point}) != model's ({scale}, {zp})")
        return d

    @staticmethod
    def _qparams(d):
        """(dtype, scale, zero point, min, max), or None for a float tensor; looked up once
        because the runtime calls _quantise once per beat."""
        dtype = np.dtype(d["dtype"])
        if dtype == np.float32:
            return None
        scale, zp = d["quantization"]
        info = np.iinfo(dtype)
        return dtype, scale, zp, float(info.min), float(info.max)

    def _quantise(self, x):
        q = self._in_q
        if q is None:
            return x.astype(np.float32)
        dtype, scale, zp, lo, hi = q
        y = np.rint(x / scale + zp)  # rint = np.round's half-to-even, without its wrapper
        np.minimum(np.maximum(y, lo, out=y), hi, out=y)
        return y.astype(dtype)

    def _dequantise(self, y):
        q = self._out_q
        if q is None:
            return y.astype(np.float32)
        _, scale, zp, _, _ = q
        return ((y.astype(np.float32) - zp) * scale).astype(np.float32)

    def predict_logits(self, windows) -> np.ndarray:
        """Raw logits of preprocessed windows.

        Parameters
        ----------
        windows : numpy.ndarray
            ``(n, window_samples)`` or one ``(window_samples,)`` window, float32, as
            :func:`~selfmis.preprocess.preprocess_window` returns them.

        Returns
        -------
        numpy.ndarray
            ``(n, n_labels)`` float32, in the card's label order.

        Raises
        ------
        ValueError
            The windows are not ``window_samples`` long.
        """
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 1:
            windows = windows[None]
        if windows.shape[-1] != self.window:
            raise ValueError(f"expected windows of {self.window} samples, got {windows.shape}")
        out = np.empty((len(windows), len(self.card.labels)), dtype=np.float32)
        interp, i_idx, o_idx = self.interpreter, self._in["index"], self._out["index"]
        for i, w in enumerate(windows):
            interp.set_tensor(i_idx, self._quantise(w.reshape(self._in_shape)))
            interp.invoke()
            raw = interp.get_tensor(o_idx)
            for hook in TFLiteModel.raw_output_hooks:
                hook(raw)
            out[i] = self._dequantise(raw).reshape(-1)[: out.shape[1]]
        return out

    def predict_int8(self, window):
        """One window's quantised input and raw output, as the interpreter sees them.

        Parameters
        ----------
        window : numpy.ndarray
            One preprocessed window (any shape holding the card's input size).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            The input tensor after the card's quantisation and the output tensor before
            dequantisation, both flat copies (for bit-exact comparisons with other engines).
        """
        q = self._quantise(np.asarray(window, np.float32).reshape(self._in_shape))
        self.interpreter.set_tensor(self._in["index"], q)
        self.interpreter.invoke()
        return q.reshape(-1).copy(), self.interpreter.get_tensor(self._out["index"]).reshape(-1).copy()

    def predict_proba(self, windows) -> np.ndarray:
        """Calibrated probabilities (the card's calibration; a plain sigmoid on older cards).

        Parameters
        ----------
        windows : numpy.ndarray
            As for :meth:`predict_logits`.

        Returns
        -------
        numpy.ndarray
            ``(n, n_labels)`` probabilities in [0, 1].

        Raises
        ------
        ValueError
            As :meth:`predict_logits`.
        """
        return self.card.probabilities(self.predict_logits(windows))
