"""A virtual ECG wearable: streams a real record in the SelfMIS protocol.

It behaves like the reference firmware (``firmware/ad8232_serial``): a HELLO
at start and every few seconds, DATA frames of ``samples_per_frame`` ADC
counts, the lead-off flag, a wrapping sequence number -- or, with
``ascii=True``, one integer per line like the hobby AD8232 sketches.  The
analogue side is emulated by quantising the record (mV) to counts at
``uv_per_lsb`` (optionally with noise, mains hum and a narrower ADC), and
link faults can be injected (dropped, corrupted, duplicated frames) with a
seed, so a runtime can be tested against a misbehaving device.

Outputs: a pseudo-terminal (``edge-run --port /dev/pts/N`` reads it like a
USB serial device), stdout, a file, or one TCP client on 127.0.0.1 (pyserial
URL ``socket://127.0.0.1:PORT``).

In-process use::

    dev = VirtualDevice.from_path("core/sample_data/ptbxl/records500/00000/00271_hr")
    for chunk in dev.chunks():       # (t_seconds, bytes), no pacing
        decoder.feed(chunk.data)
    dev.stream_to(fileobj, speed=None)   # as fast as possible

Command line: ``selfmis-sim --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from selfmis import protocol as P
from selfmis.sample_data import BUNDLED_PTBXL

__all__ = ["VirtualDevice", "Chunk", "StreamStats", "quantize", "main", "default_record_path"]

log = logging.getLogger("selfmis.firmware_bridge.sim")

FIRMWARE_VERSION = "selfmis-sim 1"


def quantize(signal_mv: np.ndarray, uv_per_lsb: float, lo: int, hi: int) -> np.ndarray:
    """mV -> integer ADC counts (round half to even), clipped like a saturating ADC."""
    counts = np.rint(np.asarray(signal_mv, dtype=np.float64) * 1000.0 / uv_per_lsb)
    return np.clip(counts, lo, hi).astype(np.int32)


def default_record_path() -> Optional[str]:
    """A 500 Hz PTB-XL record shipped with the package (None if absent)."""
    for root in (BUNDLED_PTBXL,):
        for sub in ("records500", "records100"):
            heas = sorted((root / sub).glob("*/*.hea"))
            if heas:
                return str(heas[0].with_suffix(""))
    return None


@dataclass
class Chunk:
    """Bytes the device puts on the wire once the sample at ``t`` (s) is acquired."""

    t: float
    data: bytes
    kind: str  # "hello", "data", "ascii"


@dataclass
class StreamStats:
    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    passes: int = 0


class VirtualDevice:
    """Emulated AD8232 wearable fed from a recorded signal.

    Parameters
    ----------
    signal_mv : 1-D array, the lead in millivolts (NaN = invalid -> lead-off)
    fs : sampling rate in Hz
    lead : lead name announced in HELLO / the ASCII header
    uv_per_lsb : ADC resolution at the electrodes (µV per count).  The
        default 1.0 reproduces PTB-XL's stored integers exactly.
    sample_format : ``P.FMT_INT16_LE`` / ``FMT_INT24_LE`` / ``FMT_INT32_LE``
    adc_bits : clip counts to a signed ``adc_bits`` range (a 12-bit ESP32 ADC
        centred on mid-rail is ``adc_bits=12``); default: the format's range
    samples_per_frame : default ``fs / 10`` (10 frames/s)
    ascii : one integer per line (``!`` while lead-off) instead of frames
    noise_uv, mains_uv, mains_hz : added white noise (std) and mains hum
    lead_off : ``[(start_s, duration_s), ...]`` in record time, each pass
    drop_rate, corrupt_rate, duplicate_rate : per-frame fault probabilities
    seed : for noise and faults (reproducible)
    loop : restart at the end of the record (sequence numbers continue)
    hello_every_s : resend HELLO so a host that connects late learns the gain
    """

    def __init__(self, signal_mv, fs: float, lead: str = "I", *, uv_per_lsb: float = 1.0,
                 sample_format: int = P.FMT_INT16_LE, adc_bits: Optional[int] = None,
                 samples_per_frame: Optional[int] = None, ascii: bool = False,
                 noise_uv: float = 0.0, mains_uv: float = 0.0, mains_hz: float = 50.0,
                 lead_off: Sequence[Tuple[float, float]] = (), drop_rate: float = 0.0,
                 corrupt_rate: float = 0.0, duplicate_rate: float = 0.0, seed: int = 0,
                 loop: bool = False, hello_every_s: float = 5.0,
                 device_id: str = "virtual-0001", firmware_version: str = FIRMWARE_VERSION):
        sig = np.asarray(signal_mv, dtype=np.float64)
        if sig.ndim != 1 or sig.size == 0:
            raise ValueError(f"signal must be a non-empty 1-D array, got shape {sig.shape}")
        if not fs > 0:
            raise ValueError(f"fs must be positive, got {fs}")
        if not uv_per_lsb > 0:
            raise ValueError(f"uv_per_lsb must be positive, got {uv_per_lsb}")
        for name, rate in (("drop_rate", drop_rate), ("corrupt_rate", corrupt_rate),
                           ("duplicate_rate", duplicate_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        self.signal_mv = sig
        self.fs = float(fs)
        self.lead = lead
        # what the host will see in HELLO is float32: quantise with that very value
        self.uv_per_lsb = float(np.float32(uv_per_lsb))
        self.sample_format = sample_format
        lo, hi = P.sample_range(sample_format)
        if adc_bits is not None:
            if not 2 <= adc_bits <= 8 * P.sample_width(sample_format):
                raise ValueError(f"adc_bits={adc_bits} does not fit sample format "
                                 f"0x{sample_format:02X}")
            lo, hi = -(1 << (adc_bits - 1)), (1 << (adc_bits - 1)) - 1
        self.range = (lo, hi)
        self.samples_per_frame = int(samples_per_frame or max(1, round(self.fs / 10)))
        if not 1 <= self.samples_per_frame <= 255:
            raise ValueError("samples_per_frame must be in 1..255")
        self.ascii = ascii
        self.noise_uv, self.mains_uv, self.mains_hz = float(noise_uv), float(mains_uv), float(mains_hz)
        self.lead_off = [(float(a), float(b)) for a, b in lead_off]
        self.drop_rate, self.corrupt_rate, self.duplicate_rate = drop_rate, corrupt_rate, duplicate_rate
        self.seed = seed
        self.loop = loop
        self.hello_every_s = hello_every_s
        self.device_id, self.firmware_version = device_id, firmware_version
        self.stats = StreamStats()

    # -- constructors --------------------------------------------------------

    @classmethod
    def from_record(cls, record, lead: str = "I", **kw) -> "VirtualDevice":
        """From a :class:`selfmis.readers.Record` (one lead by name)."""
        return cls(record.lead(lead), record.fs, lead=lead, **kw)

    @classmethod
    def from_path(cls, path, lead: str = "I", **kw) -> "VirtualDevice":
        """From a WFDB record path (no extension) or a CSV file."""
        from selfmis.readers import read_record
        return cls.from_record(read_record(str(path)), lead=lead, **kw)

    # -- what goes on the wire --------------------------------------------------

    def hello(self) -> P.Hello:
        return P.Hello(fs_hz=self.fs, lead=self.lead, uv_per_lsb=self.uv_per_lsb,
                       sample_format=self.sample_format, firmware_version=self.firmware_version,
                       device_id=self.device_id)

    def lead_off_mask(self) -> np.ndarray:
        """True where the electrodes are off: injected periods and NaN samples."""
        mask = ~np.isfinite(self.signal_mv)
        t = np.arange(self.signal_mv.size) / self.fs
        for start, dur in self.lead_off:
            mask |= (t >= start) & (t < start + dur)
        return mask

    def counts(self, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        """The ADC counts of one pass (0 while lead-off).  Deterministic without noise."""
        uv = np.nan_to_num(self.signal_mv, nan=0.0) * 1000.0
        if self.mains_uv:
            uv = uv + self.mains_uv * np.sin(2 * np.pi * self.mains_hz * np.arange(uv.size) / self.fs)
        if self.noise_uv:
            rng = rng if rng is not None else np.random.default_rng(self.seed)
            uv = uv + rng.normal(0.0, self.noise_uv, uv.size)
        c = quantize(uv / 1000.0, self.uv_per_lsb, *self.range)
        c[self.lead_off_mask()] = 0  # the runtime must honour the flag, not the values
        return c

    def chunks(self) -> Iterator[Chunk]:
        """Everything the device sends, in order, with acquisition timestamps."""
        rng = np.random.default_rng(self.seed)
        n, spf = self.signal_mv.size, self.samples_per_frame
        mask = self.lead_off_mask()
        seq, t0, next_hello = 0, 0.0, 0.0
        hello_bytes = P.encode_hello(self.hello())
        while True:
            counts = self.counts(rng)
            self.stats.passes += 1
            if self.ascii:
                hdr = (f"# fs={self.fs:g} lead={self.lead} uv_per_lsb={self.uv_per_lsb!r} "
                       f"device={self.device_id}\r\n").encode()
                yield Chunk(t0, hdr, "ascii")
            for i in range(0, n, spf):
                t_first, t = t0 + i / self.fs, t0 + min(i + spf, n) / self.fs
                if not self.ascii and t_first >= next_hello - 1e-9:
                    yield Chunk(t_first, hello_bytes, "hello")
                    next_hello += self.hello_every_s if self.hello_every_s > 0 else float("inf")
                block, off = counts[i:i + spf], mask[i:i + spf]
                if self.ascii:
                    lines = [b"!" if o else str(int(v)).encode() for v, o in zip(block, off)]
                    raw = b"\r\n".join(lines) + b"\r\n"
                else:
                    flags = P.FLAG_LEAD_OFF if off.any() else 0
                    raw = P.encode_frame(P.DataFrame(seq=seq, samples=block, flags=flags,
                                                     fs_hz=self.fs, sample_format=self.sample_format))
                seq = (seq + 1) & 0xFFFF
                self.stats.frames += 1
                kind = "ascii" if self.ascii else "data"
                if self.drop_rate and rng.random() < self.drop_rate:
                    self.stats.dropped += 1
                    continue
                if self.corrupt_rate and rng.random() < self.corrupt_rate:
                    raw = self._corrupt(raw, rng)
                    self.stats.corrupted += 1
                yield Chunk(t, raw, kind)
                if self.duplicate_rate and rng.random() < self.duplicate_rate:
                    self.stats.duplicated += 1
                    yield Chunk(t, raw, kind)
            t0 += n / self.fs
            if not self.loop:
                return

    @staticmethod
    def _corrupt(raw: bytes, rng: np.random.Generator) -> bytes:
        """Flip one random bit past the SYNC (a UART/BLE bit error)."""
        b = bytearray(raw)
        pos = int(rng.integers(min(2, len(b) - 1), len(b)))
        b[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)

    def frames(self) -> Iterator[bytes]:
        """Just the bytes of :meth:`chunks`, unpaced."""
        for c in self.chunks():
            yield c.data

    def stream_to(self, out: Union[BinaryIO, Callable[[bytes], object]], speed: Optional[float] = 1.0,
                  stop: Optional[threading.Event] = None, max_seconds: Optional[float] = None) -> StreamStats:
        """Write the stream to a binary file object (or a ``write(bytes)`` callable).

        ``speed`` 1.0 is real time, 2.0 twice as fast, ``None`` no pacing.
        Stops at the end of the record (unless looping), when ``stop`` is
        set, or after ``max_seconds`` of stream time.
        """
        write = out if callable(out) and not hasattr(out, "write") else out.write
        flush = getattr(out, "flush", None)
        start = time.monotonic()
        for chunk in self.chunks():
            if stop is not None and stop.is_set():
                break
            if max_seconds is not None and chunk.t > max_seconds:
                break
            if speed:
                delay = start + chunk.t / speed - time.monotonic()
                if delay > 0:
                    # sleeping on the event (not a busy loop) lets stop() interrupt pacing
                    if stop is not None:
                        if stop.wait(delay):
                            break
                    else:
                        time.sleep(delay)
            write(chunk.data)
            if flush is not None:
                flush()
            self.stats.bytes += len(chunk.data)
        return self.stats


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------

class _FdWriter:
    """write() that finishes partial writes on a raw fd (pty master, socket fd)."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]


def open_pty(link: Optional[str] = None) -> Tuple[int, int, str]:
    """A pseudo-terminal pair in raw mode: (master_fd, slave_fd, slave_path).

    Raw mode matters: a cooked tty would echo the bytes back and turn \\r
    into \\n, corrupting binary frames.  The slave fd is kept open so the
    reader can close and reopen the port (like unplugging) without the
    writer getting EIO.
    """
    import tty  # POSIX only; imported here so that importing this module works anywhere
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    if link:
        tmp = f"{link}.tmp{os.getpid()}"
        os.symlink(path, tmp)
        os.replace(tmp, link)
    return master, slave, path


def _parse_period(text: str) -> Tuple[float, float]:
    try:
        start, dur = text.split(":", 1)
        return float(start), float(dur)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:DURATION in seconds, got {text!r}") from None


_FORMATS = {"int16": P.FMT_INT16_LE, "int24": P.FMT_INT24_LE, "int32": P.FMT_INT32_LE}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="selfmis-sim",
        description="Virtual ECG wearable: stream a real record in the SelfMIS protocol "
                    "(or ASCII) to a pseudo-terminal, stdout, a file or a TCP client.",
        epilog="Example: selfmis-sim --pty --link /tmp/ttyECG & edge-run --port /tmp/ttyECG")
    ap.add_argument("record", nargs="?",
                    help="WFDB record path without extension, or a .csv "
                         "(default: a PTB-XL record shipped with the package)")
    ap.add_argument("--lead", default="I", help="lead to stream, by name (default: I)")
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--pty", action="store_true", help="stream to a new pseudo-terminal (default)")
    out.add_argument("--stdout", action="store_true", help="write the byte stream to stdout")
    out.add_argument("--file", metavar="PATH", help="write the byte stream to a file")
    out.add_argument("--tcp", type=int, metavar="PORT",
                     help="serve one client on 127.0.0.1:PORT (0 = any free port)")
    ap.add_argument("--link", metavar="PATH", help="with --pty: also create this symlink to the slave")
    ap.add_argument("--ascii", action="store_true", help="one integer per line, '!' while lead-off")
    pace = ap.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="pacing factor (default 1.0 = real time)")
    pace.add_argument("--fast", action="store_true", help="no pacing, as fast as the reader takes it")
    ap.add_argument("--loop", action="store_true", help="restart at the end of the record")
    ap.add_argument("--seconds", type=float, help="stop after this much stream time")
    ap.add_argument("--uv-per-lsb", type=float, default=1.0,
                    help="ADC resolution at the electrodes in µV (default 1.0; AD8232 gain 1100 "
                         "on a 12-bit 3.3 V ADC is 0.7324)")
    ap.add_argument("--format", choices=sorted(_FORMATS), default="int16", help="sample format")
    ap.add_argument("--adc-bits", type=int, help="clip counts to a signed N-bit range")
    ap.add_argument("--samples-per-frame", type=int, help="default: fs/10")
    ap.add_argument("--hello-every", type=float, default=5.0, metavar="S", help="resend HELLO every S s")
    ap.add_argument("--noise-uv", type=float, default=0.0, help="white noise std in µV")
    ap.add_argument("--mains-uv", type=float, default=0.0, help="mains hum amplitude in µV")
    ap.add_argument("--mains-hz", type=float, default=50.0)
    ap.add_argument("--lead-off", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="electrodes off from START for DUR seconds (repeatable)")
    ap.add_argument("--drop", type=float, default=0.0, metavar="P", help="drop each frame with probability P")
    ap.add_argument("--corrupt", type=float, default=0.0, metavar="P", help="flip a bit in a frame with probability P")
    ap.add_argument("--duplicate", type=float, default=0.0, metavar="P", help="send a frame twice with probability P")
    ap.add_argument("--seed", type=int, default=0, help="seed for noise and faults")
    ap.add_argument("--device-id", default="virtual-0001")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """``selfmis-sim``: 0 on success, 1 on a runtime error, 2 on bad usage, 130 on Ctrl-C."""
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="selfmis-sim: %(message)s")
    path = args.record or default_record_path()
    if path is None:
        ap.error("no record given and no sample record is installed")
    try:
        dev = VirtualDevice.from_path(
            path, lead=args.lead, uv_per_lsb=args.uv_per_lsb, sample_format=_FORMATS[args.format],
            adc_bits=args.adc_bits, samples_per_frame=args.samples_per_frame, ascii=args.ascii,
            noise_uv=args.noise_uv, mains_uv=args.mains_uv, mains_hz=args.mains_hz,
            lead_off=args.lead_off, drop_rate=args.drop, corrupt_rate=args.corrupt,
            duplicate_rate=args.duplicate, seed=args.seed, loop=args.loop,
            hello_every_s=args.hello_every, device_id=args.device_id)
    except (OSError, ValueError) as e:  # RecordError is a ValueError
        log.error("%s", e)
        return 1
    # SIGTERM (systemd, kill) ends like Ctrl-C: the finally below removes --link and closes ports
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    speed = None if args.fast else args.speed
    if speed is not None and speed <= 0:
        ap.error("--speed must be positive")
    log.info("streaming %s lead %s, %.0f Hz, %.1f s%s, %s", path, dev.lead, dev.fs,
             dev.signal_mv.size / dev.fs, " (looping)" if dev.loop else "",
             "ASCII" if dev.ascii else f"{dev.samples_per_frame} samples/frame")
    closers: List[Callable[[], None]] = []
    try:
        if args.stdout:
            sink = sys.stdout.buffer
        elif args.file:
            sink = open(args.file, "wb")
            closers.append(sink.close)
        elif args.tcp is not None:
            srv = socket.create_server(("127.0.0.1", args.tcp))
            closers.append(srv.close)
            port = srv.getsockname()[1]
            print(f"socket://127.0.0.1:{port}", flush=True)
            log.info("waiting for one client on 127.0.0.1:%d", port)
            conn, peer = srv.accept()
            closers.append(conn.close)
            log.info("client %s:%d connected", *peer[:2])
            sink = _FdWriter(conn.fileno())
        else:
            master, slave, tty_path = open_pty(args.link)
            closers += [lambda: os.close(master), lambda: os.close(slave)]
            if args.link:
                closers.append(lambda: os.path.lexists(args.link) and os.unlink(args.link))
            print(args.link or tty_path, flush=True)
            log.info("virtual serial port %s%s -- e.g. edge-run --port %s", tty_path,
                     f" (link {args.link})" if args.link else "", args.link or tty_path)
            sink = _FdWriter(master)
        stats = dev.stream_to(sink, speed=speed, max_seconds=args.seconds)
        log.info("done: %d frames, %d bytes, %d dropped, %d corrupted, %d duplicated",
                 stats.frames, stats.bytes, stats.dropped, stats.corrupted, stats.duplicated)
        return 0
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, ConnectionResetError):
        log.info("reader went away")
        if args.stdout:  # keep the interpreter's final flush from complaining
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        log.error("%s", e)
        return 1
    finally:
        for close in reversed(closers):
            try:
                close()
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
