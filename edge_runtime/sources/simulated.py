"""In-process virtual device: the project's simulator, encoded to the wire protocol and decoded again.

For demos and tests without a serial port. The device is :class:`selfmis.simulate.VirtualDevice`
(the one signal + ADC + fault model, with the same option names as ``selfmis sim``: ``lead_off``,
``flat``, ``saturate`` spans as ``(start_s, duration_s)``, ``noise_uv``, ``mains_uv``, ``drop_rate``,
``corrupt_rate``, ``duplicate_rate``, ``loop``/``passes``, ``seed``); its binary frames are decoded by
the same path as the serial source (:class:`~.framed.FramedStream`), so faults exercise the quality
gate and the link handling exactly as a real device would.
"""
from __future__ import annotations

from selfmis.readers import RecordError, read_record
from selfmis.simulate import VirtualDevice

from .base import LinkEvent, Source, SourceNotFound
from .framed import FramedStream

__all__ = ["SimulatedSource"]


class SimulatedSource(Source):
    """Stream ``record`` (a path or a :class:`selfmis.readers.Record`) as a virtual device.

    ``speed``: 1.0 real time, 10 ten times faster, 0 as fast as consumed. Every other keyword goes to
    :class:`selfmis.simulate.VirtualDevice` (faults, ADC, frame size, ``device_id``).
    """

    def __init__(self, record, lead: str = "I", speed: float = 0.0, **device):
        super().__init__()
        try:
            rec = read_record(record) if not hasattr(record, "signal") else record
            device.setdefault("device_id", "in-process")
            device.setdefault("firmware_version", "sim")
            self.device = VirtualDevice.from_record(rec, lead=lead, **device)
        except RecordError as exc:
            raise SourceNotFound(str(exc)) from None
        if self.device.ascii:
            raise ValueError("SimulatedSource decodes binary frames; use selfmis sim --ascii for ASCII")
        self.lead, self.fs, self.speed = lead, self.device.fs, float(speed)
        self.realtime = self.speed > 0
        self.name = f"simulated:{rec.name}"
        self._framed = FramedStream(lead, 1.0, self.stats)

    def _steps(self):
        yield LinkEvent("connected", {"device": self.name})
        for chunk in self.device.paced(self.speed or None):
            if self._closed:
                return
            yield from self._framed.feed(chunk.data)
        yield LinkEvent("end", {"device": self.name})
