"""Generate the shared protocol test vectors from the Python encoder.

Writes ``c/test_vectors.json`` (read by the Python tests) and
``c/test_vectors.h`` (compiled into ``c/test_frame.c``), so that the Python
codec and the C firmware codec are checked against the *same* bytes.

Run after any change to the protocol::

    python -m selfmis.firmware_bridge.gen_test_vectors

``tests/test_fb_vectors.py`` fails if the committed files differ from what
this script produces.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from typing import List

import numpy as np

from selfmis import protocol as P

HERE = os.path.dirname(os.path.abspath(__file__))
JSON_PATH = os.path.join(HERE, "c", "test_vectors.json")
HEADER_PATH = os.path.join(HERE, "c", "test_vectors.h")

HELLO = P.Hello(fs_hz=250.0, lead="I", uv_per_lsb=2.44140625, sample_format=P.FMT_INT16_LE,
                firmware_version="ad8232_serial 1.0.0", device_id="esp32-a1b2c3")


def _frames():
    """Named messages that are encoded, then decoded, by both implementations."""
    D = P.DataFrame
    return [
        ("hello", HELLO),
        ("hello_int24_utf8", P.Hello(fs_hz=500.0, lead="II", uv_per_lsb=0.5,
                                     sample_format=P.FMT_INT24_LE,
                                     firmware_version="1.2.3-β", device_id="")),
        ("data_int16", D(seq=0, samples=np.array([0, 1, -1, 32767, -32768, 1234, -1234]),
                         fs_hz=250.0, sample_format=P.FMT_INT16_LE)),
        ("data_int24", D(seq=1, samples=np.array([0, 8388607, -8388608, -1, 100000, -100000]),
                         fs_hz=500.0, sample_format=P.FMT_INT24_LE)),
        ("data_int32", D(seq=2, samples=np.array([2147483647, -2147483648, 7]),
                         fs_hz=360.0, sample_format=P.FMT_INT32_LE)),
        ("data_lead_off", D(seq=7, samples=np.zeros(4, dtype=np.int32), flags=P.FLAG_LEAD_OFF,
                            fs_hz=250.0)),
        ("data_seq_wrap_a", D(seq=65535, samples=np.array([10, 20]), fs_hz=250.0)),
        ("data_seq_wrap_b", D(seq=0, samples=np.array([30, 40]), fs_hz=250.0)),
        # 0x5AA5 is the SYNC pattern A5 5A once written little-endian
        ("data_sync_in_payload", D(seq=0x5AA5, samples=np.array([0x5AA5, 0x5AA5, -1]),
                                   fs_hz=250.0)),
        ("data_empty", D(seq=3, samples=np.zeros(0, dtype=np.int32), fs_hz=250.0)),
    ]


def _streams(enc):
    """Byte streams with corruption, decoded by both implementations."""
    a, b = enc["data_int16"], enc["data_int24"]
    flipped = bytearray(a)
    flipped[P.HEADER_LEN + 12] ^= 0x10           # one bit inside the samples
    malformed_payload = struct.pack("<HBBfH", 5, 0, P.FMT_INT16_LE, 250.0, 10) + b"\x00\x00"
    bad_fmt_payload = struct.pack("<HBBfH", 6, 0, 0x7E, 250.0, 1) + b"\x00\x00"
    nan_fs_payload = struct.pack("<HBBfH", 8, 0, P.FMT_INT16_LE, float("nan"), 1) + b"\x00\x00"
    zero_uv_hello = struct.pack("<Bff", P.FMT_INT16_LE, 250.0, 0.0) + b"\x00\x00\x00"
    return [
        ("all_valid", b"".join(enc.values())),
        ("leading_garbage", b"ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n" + a),
        ("crc_error", bytes(flipped) + b),
        ("truncated_then_valid", a[: len(a) // 2] + b),
        ("length_too_large", P.SYNC + b"\x01\x02\xff\xff" + a),
        ("length_too_small", P.SYNC + b"\x01\x02\x03\x00" + a),
        ("unknown_type", P.encode_raw_frame(0x7F, b"future stuff") + a),
        ("newer_version", P.encode_raw_frame(P.FRAME_DATA, b"\x00" * 12, version=2) + b),
        ("malformed_payload", P.encode_raw_frame(P.FRAME_DATA, malformed_payload) + a),
        ("unknown_sample_format", P.encode_raw_frame(P.FRAME_DATA, bad_fmt_payload) + a),
        ("nan_sample_rate", P.encode_raw_frame(P.FRAME_DATA, nan_fs_payload) + a),
        ("zero_uv_per_lsb", P.encode_raw_frame(P.FRAME_HELLO, zero_uv_hello) + a),
        ("sync_only_garbage", b"\xa5\x5a\xa5\xa5\x5a\x01" + b + b"\xa5"),
        ("trailing_partial", a + b[:9]),
    ]


def describe(msgs) -> List[dict]:
    """Compact, implementation-neutral summary of decoded messages."""
    out = []
    for m in msgs:
        if isinstance(m, P.DataFrame):
            s = m.samples.astype(np.int64)
            out.append({"kind": "D", "seq": m.seq, "flags": m.flags, "n": len(s),
                        "fmt": m.sample_format, "fs_hz": m.fs_hz,
                        "sum": int(s.sum()), "samples": [int(x) for x in s]})
        elif isinstance(m, P.Hello):
            out.append({"kind": "H", "fs_hz": m.fs_hz, "lead": m.lead, "uv_per_lsb": m.uv_per_lsb,
                        "fmt": m.sample_format, "firmware_version": m.firmware_version,
                        "device_id": m.device_id})
        elif isinstance(m, P.DecodeError):
            out.append({"kind": "E", "offset": m.offset})
        else:
            out.append({"kind": "U", "offset": m.offset})
    return out


def counters(dec: P.StreamDecoder) -> dict:
    return {"frames_ok": dec.frames_ok, "crc_errors": dec.crc_errors,
            "bytes_skipped": dec.bytes_skipped, "frames_unknown": dec.frames_unknown,
            "frames_malformed": dec.frames_malformed}


def build() -> dict:
    frames, enc = [], {}
    for name, msg in _frames():
        raw = P.encode_hello(msg) if isinstance(msg, P.Hello) else P.encode_frame(msg)
        enc[name] = raw
        entry = {"name": name, "hex": raw.hex()}
        entry.update(describe([msg])[0])
        frames.append(entry)
    streams = []
    for name, raw in _streams(enc):
        dec = P.StreamDecoder()
        msgs = dec.feed(raw) + dec.flush()
        streams.append({"name": name, "hex": raw.hex(), "events": describe(msgs),
                        "counters": counters(dec)})
    return {"protocol_version": P.PROTOCOL_VERSION, "max_payload": P.MAX_PAYLOAD_LEN,
            "crc_check": {"input": "123456789", "crc": P.crc16_ccitt_false(b"123456789")},
            "frames": frames, "streams": streams}


def _c_bytes(hexstr: str) -> str:
    b = bytes.fromhex(hexstr)
    if not b:
        return "{0}"
    lines = []
    for i in range(0, len(b), 16):
        lines.append("    " + ", ".join(f"0x{x:02X}" for x in b[i:i + 16]))
    return "{\n" + ",\n".join(lines) + "\n}"


def _c_str(s: str) -> str:
    return '"' + "".join(f"\\x{x:02X}" if (x < 0x20 or x > 0x7E or x in (0x22, 0x5C)) else chr(x)
                         for x in s.encode("utf-8")) + '"'


def render_header(v: dict) -> str:
    L = ["/* Generated by `python -m selfmis.firmware_bridge.gen_test_vectors`. Do not edit. */",
         "#ifndef SELFMIS_TEST_VECTORS_H", "#define SELFMIS_TEST_VECTORS_H", "",
         "#include <stdint.h>", "#include <stddef.h>", "",
         "typedef struct {", "    char kind;          /* 'H' hello, 'D' data, 'E' error, 'U' unknown */",
         "    uint32_t offset;    /* for 'E' and 'U' */",
         "    uint16_t seq; uint8_t flags; uint8_t fmt; uint16_t n; float fs_hz;",
         "    int64_t sum;        /* sum of samples */",
         "    float uv_per_lsb; const char *lead; const char *firmware_version; const char *device_id;",
         "} tv_event_t;", "",
         "typedef struct {", "    const char *name;", "    const uint8_t *bytes; size_t len;",
         "    const tv_event_t *events; size_t n_events;",
         "    const int32_t *samples;  /* frames only: full sample list */",
         "    uint32_t frames_ok, crc_errors, bytes_skipped, frames_unknown, frames_malformed;",
         "} tv_case_t;", ""]

    def event_init(e):
        if e["kind"] == "D":
            return (f"{{'D', 0, {e['seq']}, {e['flags']}, {e['fmt']}, {e['n']}, {e['fs_hz']!r}f, "
                    f"{e['sum']}LL, 0.0f, 0, 0, 0}}")
        if e["kind"] == "H":
            return (f"{{'H', 0, 0, 0, {e['fmt']}, 0, {e['fs_hz']!r}f, 0, {e['uv_per_lsb']!r}f, "
                    f"{_c_str(e['lead'])}, {_c_str(e['firmware_version'])}, {_c_str(e['device_id'])}}}")
        return f"{{'{e['kind']}', {e['offset']}u, 0, 0, 0, 0, 0.0f, 0, 0.0f, 0, 0, 0}}"

    def emit(prefix, items, with_samples):
        rows = []
        for i, it in enumerate(items):
            tag = f"{prefix}{i}"
            L.append(f"/* {it['name']} */")
            L.append(f"static const uint8_t {tag}_bytes[] = {_c_bytes(it['hex'])};")
            evs = it["events"] if "events" in it else [it]
            if evs:
                L.append(f"static const tv_event_t {tag}_events[] = {{\n    "
                         + ",\n    ".join(event_init(e) for e in evs) + "\n};")
            samples = "0"
            if with_samples and it.get("samples"):
                L.append(f"static const int32_t {tag}_samples[] = {{"
                         + ", ".join(f"{x}" if x != -2147483648 else "INT32_MIN"
                                     for x in it["samples"]) + "};")
                samples = f"{tag}_samples"
            c = it.get("counters", {})
            rows.append(f"    {{\"{it['name']}\", {tag}_bytes, {len(it['hex']) // 2}, "
                        f"{tag + '_events' if evs else '0'}, {len(evs)}, {samples}, "
                        f"{c.get('frames_ok', 0)}, {c.get('crc_errors', 0)}, "
                        f"{c.get('bytes_skipped', 0)}, {c.get('frames_unknown', 0)}, "
                        f"{c.get('frames_malformed', 0)}}}")
        return rows

    L.insert(5, "#include <limits.h>")
    frames = emit("tv_f", v["frames"], True)
    streams = emit("tv_s", v["streams"], False)
    L += ["", "static const tv_case_t tv_frames[] = {", ",\n".join(frames), "};",
          f"#define TV_N_FRAMES {len(frames)}", "",
          "static const tv_case_t tv_streams[] = {", ",\n".join(streams), "};",
          f"#define TV_N_STREAMS {len(streams)}", "",
          f"#define TV_CRC_CHECK 0x{v['crc_check']['crc']:04X}u", "",
          "#endif /* SELFMIS_TEST_VECTORS_H */", ""]
    return "\n".join(L)


def render_json(v: dict) -> str:
    return json.dumps(v, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if the committed files are out of date")
    args = ap.parse_args(argv)
    v = build()
    wanted = {JSON_PATH: render_json(v), HEADER_PATH: render_header(v)}
    stale = []
    for path, text in wanted.items():
        try:
            with open(path, encoding="utf-8") as fh:
                current = fh.read()
        except OSError:
            current = None
        if current != text:
            stale.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    for p in stale:
        print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
