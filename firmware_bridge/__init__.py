"""Firmware bridge: everything between an ECG wearable and the gateway.

* :mod:`.protocol` -- the wire codec (frames, CRC, stream decoder, ASCII lines)
* :mod:`.virtual_device` -- a simulated wearable streaming a real record (``selfmis-sim``)
* :mod:`.deploy` -- bundle packing, push/rollback to a gateway, TFLite Micro export
* ``c/`` -- the same framing in C99 for firmware, ``firmware/`` -- reference sketches

Only numpy and the standard library are needed here (pyserial/bleak are used
by the edge runtime); never import training or conversion toolchains.
"""

from selfmis.protocol import (  # noqa: F401
    PROTOCOL_VERSION, SYNC, FLAG_LEAD_OFF, FMT_INT16_LE, FMT_INT24_LE, FMT_INT32_LE,
    SERVICE_UUID, DATA_CHAR_UUID, CONTROL_CHAR_UUID,
    Hello, DataFrame, DecodeError, encode_hello, encode_frame,
    StreamDecoder, SequenceTracker, AsciiLineDecoder,
)
