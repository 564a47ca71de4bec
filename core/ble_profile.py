"""The SelfMIS BLE GATT profile: the service that carries the wire protocol's byte stream.

A wearable advertises :data:`SERVICE_UUID` (128-bit UUIDs of this project, not
SIG-assigned) and notifies the same byte stream it would write to a serial port
on :data:`DATA_CHAR_UUID`; the gateway feeds every notification, in order, to one
:class:`selfmis.protocol.StreamDecoder`. See ``firmware_bridge/PROTOCOL.md``.

References
----------
* Bluetooth Core Spec v5.3, Vol 3, Part F (ATT): a notification carries at
  most ATT_MTU - 3 bytes of value.
"""

from __future__ import annotations

from .protocol import DATA_FIXED_LEN, FMT_INT16_LE, FRAME_OVERHEAD, sample_width

__all__ = [
    "SERVICE_UUID", "DATA_CHAR_UUID", "CONTROL_CHAR_UUID",
    "CTRL_SEND_HELLO", "CTRL_START", "CTRL_STOP",
    "BLE_DEFAULT_ATT_MTU", "BLE_PREFERRED_ATT_MTU",
    "max_samples_per_notification",
]

#: Primary service advertised by SelfMIS firmware.
SERVICE_UUID = "5e1f0001-6d15-4c8e-9d3a-3f6b2e0c7a11"
#: Notify: carries the same byte stream as the serial port (frames may be
#: split across notifications -- feed every notification to one decoder).
DATA_CHAR_UUID = "5e1f0002-6d15-4c8e-9d3a-3f6b2e0c7a11"
#: Write (with response): one command byte, see CTRL_*.
CONTROL_CHAR_UUID = "5e1f0003-6d15-4c8e-9d3a-3f6b2e0c7a11"
CTRL_SEND_HELLO = 0x01  # device answers with a HELLO frame on DATA
CTRL_START = 0x02       # start streaming DATA frames
CTRL_STOP = 0x03        # stop streaming

#: ATT_MTU every BLE link starts with; 20 bytes of value per notification.
BLE_DEFAULT_ATT_MTU = 23
#: What the firmware requests (BLE 4.2+ data length extension): 244 bytes.
BLE_PREFERRED_ATT_MTU = 247


def max_samples_per_notification(att_mtu: int, sample_format: int = FMT_INT16_LE) -> int:
    """Samples per DATA frame so that one frame fits one notification.

    A notification carries ``att_mtu - 3`` bytes.  Firmware should size
    frames with this so that BLE loss hits whole frames; if a frame is
    larger it is simply split over consecutive notifications and the host
    reassembles it because it feeds all notifications, in order, to one
    :class:`StreamDecoder` (the byte stream is the concatenation of the
    notification values).
    """
    room = att_mtu - 3 - FRAME_OVERHEAD - DATA_FIXED_LEN
    return max(0, room // sample_width(sample_format))
