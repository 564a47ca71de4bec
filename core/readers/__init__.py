"""Read ECG files with numpy alone (EDF through an optional library): WFDB, delimited text, EDF/BDF.

``read_record(path)`` loads a whole record; ``open_lead(path, lead)`` streams one
lead in bounded memory (the replay path: a 24-hour file never sits in memory).
The format comes from the content (:func:`detect_format`); ``format=`` names it
where the content cannot.

Modules: :mod:`.record` (types), :mod:`.wfdb_header` / :mod:`.wfdb_formats` /
:mod:`.wfdb_record` (WFDB), :mod:`.text` (CSV/TSV/semicolon, Polar Sensor
Logger), :mod:`.edf` (EDF/EDF+/BDF via pyedflib), :mod:`.detect` (dispatch).
"""
from .detect import FORMATS, detect_format, open_lead, read_record, stream_lead
from .record import LeadStream, Record, RecordError
from .wfdb_header import read_header

__all__ = ["Record", "RecordError", "read_record", "read_header", "stream_lead", "open_lead",
           "LeadStream", "detect_format", "FORMATS"]
