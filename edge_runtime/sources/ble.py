"""Bluetooth LE source (bleak): Polar H10 ECG over PMD, or the project's own GATT profile.

Polar H10 (Polar Measurement Data service, reverse-documented in Polar's
BLE SDK, ``technical_documentation/Polar_Measurement_Data_Specification.pdf``):

* service ``FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8``, control point ``...C81``
  (write + indicate), data ``...C82`` (notify);
* start ECG: indications on the control point first, then notifications on
  data, then write ``02 00 00 01 82 00 01 01 0E 00`` (start, type ECG,
  setting 0 = sample rate 0x0082 = 130 Hz, setting 1 = resolution 14 bit);
  the control point answers ``F0 02 00 <error> ...`` (error 0 = success);
* each data notification: type byte ``0x00`` (ECG), 8-byte little-endian
  timestamp (ns) of the *last* sample, frame-type byte ``0x00``, then signed
  24-bit little-endian samples in µV (73 per notification at 130 Hz).

SelfMIS firmware (``SERVICE_UUID`` of :mod:`selfmis.ble_profile`):
notifications on ``DATA_CHAR_UUID`` carry the same framed byte stream as the
serial port; the host writes ``CTRL_SEND_HELLO`` and ``CTRL_START`` to
``CONTROL_CHAR_UUID``.

bleak is asyncio; the runtime iterates synchronously, so the client runs on a
private event loop in a daemon thread and hands items over through a bounded
queue (a stalled consumer drops the oldest data with a ``gap`` event rather than
growing memory). bleak is imported only when a BLE source connects or scans;
tests inject a fake client with ``client_factory``.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from selfmis import ble_profile
from selfmis.ble_profile import SERVICE_UUID

from .base import Backoff, Chunk, DeviceLost, LinkEvent, Source, SourceError, SourceNotFound, coalesce
from .framed import FramedStream

__all__ = [
    "PMD_SERVICE_UUID", "PMD_CONTROL_UUID", "PMD_DATA_UUID", "POLAR_ECG_FS",
    "POLAR_START_ECG", "PmdEcgFrame", "PmdDecodeError", "decode_pmd_ecg", "encode_pmd_ecg",
    "parse_pmd_response",
    "BleSource", "scan",
]

log = logging.getLogger("selfmis.edge_runtime")

PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
POLAR_ECG_FS = 130.0
#: start measurement, type ECG, sample rate 130 Hz, resolution 14 bit
POLAR_START_ECG = bytes([0x02, 0x00, 0x00, 0x01, 0x82, 0x00, 0x01, 0x01, 0x0E, 0x00])
POLAR_STOP_ECG = bytes([0x03, 0x00])
_PMD_ECG = 0x00
_PMD_HEADER = 10  # type, 8-byte timestamp, frame type
#: Polar H10 front end: ±~20 mV usable; 24-bit µV samples can never saturate the format
_POLAR_RAILS_MV = (-(1 << 23) / 1000.0, ((1 << 23) - 1) / 1000.0)


class PmdDecodeError(ValueError):
    """A PMD notification that is not an uncompressed ECG frame; says which byte is wrong."""


@dataclass
class PmdEcgFrame:
    timestamp_ns: int        # sensor clock, of the last sample
    samples_uv: np.ndarray   # int32 µV


def decode_pmd_ecg(data: bytes) -> PmdEcgFrame:
    """Decode one Polar PMD ECG notification (uncompressed frame type 0).

    Raises :class:`PmdDecodeError` (a ValueError) naming the byte offset when
    the notification is not one; never anything else.
    """
    data = bytes(data)
    if len(data) < _PMD_HEADER:
        raise PmdDecodeError(f"PMD frame of {len(data)} bytes is shorter than its "
                             f"{_PMD_HEADER}-byte header")
    if data[0] != _PMD_ECG:
        raise PmdDecodeError(f"byte 0: measurement type 0x{data[0]:02X} is not ECG (0x00)")
    frame_type = data[9]
    if frame_type != 0x00:
        raise PmdDecodeError(f"byte 9: frame type 0x{frame_type:02X} not supported "
                             "(only uncompressed 0x00, what the H10 sends for ECG)")
    body = data[_PMD_HEADER:]
    if len(body) % 3:
        raise PmdDecodeError(f"byte {_PMD_HEADER}: {len(body)} sample bytes is not a "
                             "multiple of 3 (24-bit samples)")
    (ts,) = struct.unpack_from("<Q", data, 1)
    b = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    v = np.where(v & 0x800000, v - (1 << 24), v).astype(np.int32)
    return PmdEcgFrame(int(ts), v)


def encode_pmd_ecg(samples_uv, timestamp_ns: int) -> bytes:
    """One PMD ECG notification as a Polar H10 sends it (what :func:`decode_pmd_ecg` reads);
    for fake devices in tests and benchmarks."""
    v = np.asarray(samples_uv, dtype=np.int64)
    if v.size and (v.min() < -(1 << 23) or v.max() >= (1 << 23)):
        raise ValueError("PMD ECG samples are 24-bit")
    body = (v & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return bytes([_PMD_ECG]) + struct.pack("<Q", int(timestamp_ns)) + b"\x00" + body


def parse_pmd_response(data: bytes) -> tuple:
    """Control-point answer ``F0 <op> <type> <error> ...`` -> (op, type, error)."""
    data = bytes(data)
    if len(data) < 4 or data[0] != 0xF0:
        raise PmdDecodeError(f"not a PMD control-point response: {data[:8].hex(' ')}")
    return data[1], data[2], data[3]


_PMD_ERRORS = {1: "invalid op code", 2: "invalid measurement type", 3: "not supported",
               4: "invalid length", 5: "invalid parameter", 6: "already in state",
               7: "invalid resolution", 8: "invalid sample rate", 9: "invalid range",
               10: "invalid MTU", 11: "invalid number of channels", 12: "invalid state",
               13: "device in charger"}


def _default_client_factory(address, disconnected_callback):
    try:
        from bleak import BleakClient
    except ImportError:
        raise SourceError("bleak is not installed: pip install 'selfmis-edge[edge]'") from None
    return BleakClient(address, disconnected_callback=disconnected_callback)


async def _scan(timeout_s: float) -> list:
    from bleak import BleakScanner
    found = await BleakScanner.discover(timeout=timeout_s, return_adv=True)
    out = []
    for address, (dev, adv) in found.items():
        uuids = [u.lower() for u in (adv.service_uuids or [])]
        name = dev.name or adv.local_name or ""
        kind = ("polar" if PMD_SERVICE_UUID in uuids or name.lower().startswith("polar")
                else "selfmis" if SERVICE_UUID in uuids else "")
        out.append({"address": address, "name": name, "rssi": adv.rssi, "kind": kind})
    return sorted(out, key=lambda d: (d["kind"] == "", -(d["rssi"] or -999)))


def scan(timeout_s: float = 5.0) -> list:
    """Discover BLE devices: [{address, name, rssi, kind ('polar', 'selfmis' or '')}]."""
    try:
        import bleak  # noqa: F401
    except ImportError:
        raise SourceError("bleak is not installed: pip install 'selfmis-edge[edge]'") from None
    return asyncio.run(_scan(timeout_s))


_END = object()


class BleSource(Source):
    """Connects to ``address``, picks Polar PMD or the SelfMIS profile from its services.

    ``connect_timeout_s``: a device that never answers raises
    :class:`SourceNotFound` with a message after this long. A device that
    disconnects is reconnected with exponential backoff; after the retries
    :class:`DeviceLost` is raised. ``profile`` forces "polar" or "selfmis".
    """

    def __init__(self, address: str, lead: str = "I", profile: str | None = None,
                 connect_timeout_s: float = 15.0, idle_timeout_s: float = 10.0,
                 backoff: Backoff | None = None, client_factory=None, queue_size: int = 512,
                 check_rate: bool = True):
        super().__init__(check_rate=check_rate)
        self.address, self.lead, self.profile = address, lead, profile
        self.connect_timeout_s, self.idle_timeout_s = connect_timeout_s, idle_timeout_s
        self.backoff = backoff or Backoff()
        self.client_factory = client_factory or _default_client_factory
        self.name = f"ble:{address}"
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._loop = None
        self._thread = None
        self._client = None
        self._disconnected = None
        self._framed = None
        self._pmd_n = 0
        self._pmd_last_ts = None
        self._cp_event = None
        self._cp_response = None

    # -- thread-side (asyncio) --------------------------------------------

    def _put(self, item) -> None:
        """From the BLE thread: enqueue; when full, drop the oldest chunk (bounded memory)."""
        while True:
            try:
                self._q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = self._q.get_nowait()
                    if isinstance(old, Chunk):
                        self.stats["drops"] += 1
                        self.stats["lost_samples"] += len(old.samples)
                        self._q.put_nowait(LinkEvent("gap", {"reason": "consumer too slow",
                                                             "missing_samples": len(old.samples)}))
                except (queue.Empty, queue.Full):
                    pass

    def _on_disconnect(self, _client) -> None:
        if self._loop is not None and self._disconnected is not None:
            self._loop.call_soon_threadsafe(self._disconnected.set)

    async def _connect_once(self):
        client = self.client_factory(self.address, self._on_disconnect)
        self._client = client
        self._disconnected = asyncio.Event()
        try:
            await asyncio.wait_for(client.connect(), self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise SourceNotFound(f"BLE device {self.address} did not answer within "
                                 f"{self.connect_timeout_s:.0f} s (is it on, in range, and not "
                                 "connected to a phone?)") from None
        except Exception as exc:  # bleak raises BleakError / BleakDeviceNotFoundError / OSError
            raise SourceNotFound(f"BLE device {self.address}: cannot connect ({exc})") from None
        profile = self.profile or self._detect_profile(client)
        if profile == "polar":
            await self._start_polar(client)
        else:
            await self._start_selfmis(client)
        return profile

    @staticmethod
    def _detect_profile(client) -> str:
        services = getattr(client, "services", None)
        uuids = set()
        try:
            uuids = {str(s.uuid).lower() for s in services}
        except TypeError:
            pass
        if PMD_SERVICE_UUID in uuids:
            return "polar"
        if SERVICE_UUID in uuids:
            return "selfmis"
        raise SourceNotFound(f"BLE device {getattr(client, 'address', '?')} offers neither the Polar "
                             "PMD service nor the SelfMIS ECG service")

    async def _start_polar(self, client):
        self.fs = POLAR_ECG_FS
        self._pmd_last_ts = None
        self._cp_event = asyncio.Event()

        def on_cp(_char, data):
            self._cp_response = bytes(data)
            self._cp_event.set()

        # Polar answers every control-point write by indication: enable it first.
        await client.start_notify(PMD_CONTROL_UUID, on_cp)
        await client.start_notify(PMD_DATA_UUID, self._on_pmd)
        self._cp_event.clear()
        await client.write_gatt_char(PMD_CONTROL_UUID, POLAR_START_ECG, response=True)
        try:
            await asyncio.wait_for(self._cp_event.wait(), 5.0)
        except asyncio.TimeoutError:
            log.warning("%s: no answer to the ECG start command; continuing", self.address)
            return
        try:
            op, mtype, err = parse_pmd_response(self._cp_response)
        except PmdDecodeError as exc:
            log.warning("%s: %s", self.address, exc)
            return
        if err not in (0, 6):  # 6 = already streaming
            raise SourceError(f"Polar {self.address} refused to start ECG: "
                              f"{_PMD_ERRORS.get(err, f'error {err}')}")

    def _on_pmd(self, _char, data) -> None:
        t_arr, t_mono = time.time(), time.perf_counter()
        try:
            frame = decode_pmd_ecg(data)
        except PmdDecodeError as exc:
            self.stats["decode_errors"] += 1
            self._put(LinkEvent("decode_error", {"reason": str(exc)}, t_arr))
            return
        n = len(frame.samples_uv)
        gap = 0
        if self._pmd_last_ts is not None and n:
            # the sensor timestamps its last sample: a jump means lost notifications
            expected_ns = n * 1e9 / POLAR_ECG_FS
            dt = frame.timestamp_ns - self._pmd_last_ts
            if dt > 1.5 * expected_ns:
                gap = int(round(dt * POLAR_ECG_FS / 1e9)) - n
                self.stats["drops"] += max(1, int(round(gap / n)))
                self.stats["lost_samples"] += max(gap, 0)
                self._put(LinkEvent("gap", {"missing_samples": gap}, t_arr))
        self._pmd_last_ts = frame.timestamp_ns
        self._pmd_n += 1
        # the PMD stream carries integer µV: counts at 1 µV per count (kept for --record)
        self._put(Chunk.from_counts(frame.samples_uv, 1.0, POLAR_ECG_FS, t_arr, t_mono,
                                    seq=self._pmd_n, gap_before=max(gap, 0), rails=_POLAR_RAILS_MV))

    async def _start_selfmis(self, client):
        if self._framed is None:
            self._framed = FramedStream(self.lead, 1.0, self.stats)
        self._framed.reset()

        def on_data(_char, data):
            try:
                items = self._framed.feed(bytes(data))
            except SourceError as exc:  # a refused rate/gain: the consumer raises it (exit code 4)
                self._put(exc)
                return
            if self._framed.fs:
                self.fs = self._framed.fs
            for it in items:
                self._put(it)

        await client.start_notify(ble_profile.DATA_CHAR_UUID, on_data)
        await client.write_gatt_char(ble_profile.CONTROL_CHAR_UUID, bytes([ble_profile.CTRL_SEND_HELLO]), response=True)
        await client.write_gatt_char(ble_profile.CONTROL_CHAR_UUID, bytes([ble_profile.CTRL_START]), response=True)

    async def _run(self):
        try:
            try:
                profile = await self._connect_once()
            except SourceError as exc:
                self._put(exc)  # never connected: the consumer raises it (exit code 4)
                return
            self._put(LinkEvent("connected", {"address": self.address, "profile": profile}))
            while not self._closed:
                await self._disconnected.wait()
                if self._closed:
                    return
                t_lost = time.monotonic()
                self._put(LinkEvent("disconnected", {"address": self.address}, discontinuity=True))
                log.warning("BLE %s disconnected; reconnecting", self.address)
                try:  # a silent-but-connected device (idle timeout) must let go before we reconnect
                    await asyncio.wait_for(self._client.disconnect(), 5.0)
                except Exception:
                    pass
                reason, ok = "disconnected", False
                for i, delay in enumerate(self.backoff.delays(), 1):
                    self._put(LinkEvent("reconnecting", {"address": self.address, "attempt": i,
                                                         "delay_s": delay}))
                    await asyncio.sleep(delay)
                    if self._closed:
                        return
                    try:
                        await self._connect_once()
                    except SourceError as exc:
                        reason = str(exc)
                        continue
                    self.stats["reconnects"] += 1
                    self.stats["offline_s"] = round(self.stats["offline_s"] + time.monotonic() - t_lost, 3)
                    log.warning("BLE %s reconnected (attempt %d)", self.address, i)
                    self._put(LinkEvent("reconnected", {"address": self.address, "attempt": i}))
                    ok = True
                    break
                if not ok:
                    self._put(LinkEvent("lost", {"address": self.address}))
                    self._put(DeviceLost(f"BLE device {self.address} lost and not back after "
                                         f"{self.backoff.retries} retries ({reason})"))
                    return
        finally:
            if self._client is not None:
                try:
                    await self._client.disconnect()
                except Exception:  # already gone
                    pass
            self._put(_END)

    def _thread_main(self):
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run())
        finally:
            self._loop.close()

    # -- consumer side --------------------------------------------------------

    def _steps(self):
        self._thread = threading.Thread(target=self._thread_main, name="selfmis-ble", daemon=True)
        self._thread.start()
        last = time.monotonic()
        while not self._closed:
            try:
                item = self._q.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() - last > self.idle_timeout_s and self._client is not None \
                        and getattr(self._client, "is_connected", True):
                    # connected but silent: treat as a lost link so the reconnect logic runs
                    last = time.monotonic()
                    self._on_disconnect(self._client)
                continue
            last = time.monotonic()
            # take what else is already queued, so a burst of notifications (a backlog, or a
            # consumer that was busy) is one chunk for the pipeline; nothing waits for it
            batch = [item]
            n = len(item.samples) if isinstance(item, Chunk) else 0
            while n < 256:  # ~2 s at 130 Hz, like replay's chunks: bounded wait for any decision
                try:
                    it = self._q.get_nowait()
                except queue.Empty:
                    break
                batch.append(it)
                n += len(it.samples) if isinstance(it, Chunk) else 0
            for k, it in enumerate(batch):
                if it is _END or isinstance(it, BaseException):
                    yield from coalesce(batch[:k])
                    if it is _END:
                        return
                    raise it
            yield from coalesce(batch)

    @property
    def backlog(self) -> int:
        """Items received and not yet consumed (the bounded queue between bleak's loop and the reader)."""
        return self._q.qsize()

    def close(self) -> None:
        super().close()
        if self._loop is not None and self._disconnected is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._disconnected.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=3.0)
