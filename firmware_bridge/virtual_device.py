"""``selfmis sim`` / ``selfmis-sim``: the virtual ECG wearable on a real transport.

The device itself (signal, ADC, faults, frames or ASCII lines) is :class:`selfmis.simulate.VirtualDevice`,
the one simulator of the project; this module only adds the transports and the command line.

Outputs: a pseudo-terminal (``edge-run --port /dev/pts/N`` reads it like a
USB serial device), stdout, a file, or one TCP client on 127.0.0.1 (pyserial
URL ``socket://127.0.0.1:PORT``).

In-process use::

    from selfmis.simulate import VirtualDevice
    dev = VirtualDevice.from_path("core/sample_data/ptbxl/records500/00000/00271_hr", drop_rate=0.01)
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
from typing import Callable, List, Optional, Tuple

from selfmis import protocol as P
from selfmis.sample_data import BUNDLED_PTBXL
from selfmis.simulate import VirtualDevice

__all__ = ["VirtualDevice", "FdWriter", "open_pty", "main", "default_record_path", "build_parser"]

log = logging.getLogger("selfmis.firmware_bridge.sim")


def default_record_path() -> Optional[str]:
    """A 500 Hz PTB-XL record shipped with the package (None if absent)."""
    for sub in ("records500", "records100"):
        heas = sorted((BUNDLED_PTBXL / sub).glob("*/*.hea"))
        if heas:
            return str(heas[0].with_suffix(""))
    return None


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------

class FdWriter:
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
    ap.add_argument("--loop", action="store_true", help="restart at the end of the record, forever")
    ap.add_argument("--passes", type=int, default=1, metavar="N", help="play the record N times (default 1)")
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
    ap.add_argument("--wander-uv", type=float, default=0.0, help="baseline wander (breathing) amplitude in µV")
    ap.add_argument("--wander-hz", type=float, default=0.25, help="baseline wander rate in Hz (breaths per second)")
    ap.add_argument("--motion", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="electrode-motion artefact in this span (repeatable)")
    ap.add_argument("--motion-uv", type=float, default=300.0, help="motion artefact SD in µV")
    ap.add_argument("--lead-off", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="electrodes off from START for DUR seconds (repeatable)")
    ap.add_argument("--flat", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="amplifier stuck at 0 counts, no lead-off flag (repeatable)")
    ap.add_argument("--saturate", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="amplifier railed at the ADC limits (repeatable)")
    ap.add_argument("--noise-span", type=_parse_period, action="append", default=[], metavar="START:DUR",
                    help="add the --noise-uv noise only in these spans (repeatable; default everywhere)")
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
            noise_uv=args.noise_uv, noise_spans=args.noise_span, mains_uv=args.mains_uv,
            mains_hz=args.mains_hz, wander_uv=args.wander_uv, wander_hz=args.wander_hz,
            motion=args.motion, motion_uv=args.motion_uv, lead_off=args.lead_off, flat=args.flat, saturate=args.saturate,
            drop_rate=args.drop, corrupt_rate=args.corrupt,
            duplicate_rate=args.duplicate, seed=args.seed, loop=args.loop, passes=args.passes,
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
            sink = FdWriter(conn.fileno())
        else:
            master, slave, tty_path = open_pty(args.link)
            closers += [lambda: os.close(master), lambda: os.close(slave)]
            if args.link:
                closers.append(lambda: os.path.lexists(args.link) and os.unlink(args.link))
            print(args.link or tty_path, flush=True)
            log.info("virtual serial port %s%s -- e.g. edge-run --port %s", tty_path,
                     f" (link {args.link})" if args.link else "", args.link or tty_path)
            sink = FdWriter(master)
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
