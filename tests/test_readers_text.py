"""Text and EDF readers: streamed parsing equals a whole-file parse by another parser, units and rates
as declared, malformed input named by file and line; EDF/BDF through pyedflib checked by edfio."""
from __future__ import annotations

import numpy as np
import pytest

from selfmis.readers import RecordError, detect_format, open_lead, read_record
from selfmis.readers import text as text_mod


def _ecg(n=5000, seed=0):
    """A real lead I (PTB-XL 00271, 500 Hz) repeated to n samples, in mV."""
    from conftest import BUNDLED_PTBXL
    x = read_record(BUNDLED_PTBXL / "records500/00000/00271_hr").lead("I").astype(np.float64)
    return np.resize(x, n)


def _stream(path, lead="I", chunk_s=0.73, **kw):
    s = open_lead(path, lead, chunk_s, **kw)
    return s, np.concatenate(list(s))


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of a few hundred bytes: every block boundary, carry-over and slow path gets hit."""
    monkeypatch.setattr(text_mod, "BLOCK_BYTES", 257)


@pytest.mark.parametrize("sep,header", [(",", True), (",", False), ("\t", True), (";", True),
                                        (" ", True), (";", False)])
def test_delimited_text_streams_what_loadtxt_reads(tmp_path, tiny_blocks, sep, header):
    x = _ecg(3000)
    t = np.arange(len(x)) / 500
    p = tmp_path / "ecg.txt"
    rows = "\n".join(f"{a:.3f}{sep}{b:.4f}{sep}{-b:.4f}" for a, b in zip(t, x))
    p.write_text(("# fs=500\n" if not header else "") +
                 (f"time{sep}I{sep}II\n" if header else "") + rows + "\n")
    ref = np.loadtxt(p, delimiter=None if sep == " " else sep, comments="#",
                     skiprows=1 if header else 0)
    s, got = _stream(p, "I" if header else "sig1")
    assert s.fs == 500 and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref[:, 1].astype(np.float32))
    rec = read_record(p)
    assert rec.signal.shape[0] == len(x)


def test_semicolon_with_decimal_commas_and_crlf(tmp_path, tiny_blocks):
    p = tmp_path / "eu.csv"
    p.write_bytes(b"Zeit;I\r\n" + b"".join(f"{k / 250:.3f};{k % 9 / 10:.1f}\r\n".replace(".", ",").encode()
                                         for k in range(1000)))
    s, got = _stream(p)
    assert s.fs == 250 and s.format == "semicolon"
    np.testing.assert_allclose(got, [k % 9 / 10 for k in range(1000)], rtol=1e-6)


def test_headerless_single_column_needs_no_lead_and_several_columns_say_what_to_pass(tmp_path):
    p = tmp_path / "one.csv"
    p.write_text("".join(f"{v:.4f}\n" for v in _ecg(1000)))
    s, got = _stream(p, fs=500)
    assert len(got) == 1000 and s.lead == "sig0"
    q = tmp_path / "two.csv"
    q.write_text("".join(f"{v:.4f},{v:.4f}\n" for v in _ecg(100)))
    with pytest.raises(RecordError, match=r"two.csv: no header row and 2 columns; pass --lead sig0\|sig1"):
        open_lead(q, "I", fs=500)
    r = tmp_path / "v5.csv"
    r.write_text("V5\n" + "".join(f"{v:.4f}\n" for v in _ecg(100)))
    with pytest.raises(RecordError, match=r"no lead 'I'; columns are \['V5'\]"):
        open_lead(r, "I", fs=500)  # a named other lead is never taken for lead I


def test_units_counts_uv_and_a_refusal_of_unscaled_counts(tmp_path):
    x = _ecg(2000)
    counts = np.round(x * 1000 / 3.22).astype(int) + 512  # a 10-bit AD8232 sketch, 3.22 µV/LSB
    p = tmp_path / "adc.csv"
    p.write_text("".join(f"{c}\n" for c in counts))
    with pytest.raises(RecordError, match=r"adc.csv: column 'sig0' reaches \d+: not an ECG in mV; "
                                          r"pass --units uV, or --units counts --uv-per-lsb N"):
        open_lead(p, "I", fs=500)
    with pytest.raises(RecordError, match="pass --uv-per-lsb"):
        open_lead(p, "I", fs=500, units="counts")
    _, got = _stream(p, fs=500, units="counts", uv_per_lsb=3.22)
    np.testing.assert_allclose(got, counts * 3.22e-3, rtol=1e-6)
    q = tmp_path / "uv.csv"
    q.write_text("# fs=500\nI [uV]\n" + "".join(f"{v * 1000:.1f}\n" for v in x))
    s, got = _stream(q)
    assert s.meta["units"] == "uV" and s.meta["units_how"] == "declared in the file"
    np.testing.assert_allclose(got, np.round(x * 1000, 1) / 1000, rtol=1e-6)


def test_malformed_rows_are_named_by_file_and_line(tmp_path, tiny_blocks):
    x = _ecg(400)
    lines = ["# fs=500", "I"] + [f"{v:.4f}" for v in x]
    lines[300] = "0.1x"
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"bad.csv:301: not a number: '0.1x'"):
        _stream(p)
    lines[300] = "0.1,0.2"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"bad.csv:301: "):
        _stream(p)


def test_polar_sensor_logger_export_rate_from_the_strap_clock_and_gaps(tmp_path, tiny_blocks):
    """Polar H10 via Polar Sensor Logger: the rate from sensor ns timestamps, a BLE drop as NaN."""
    fs_true, t0 = 130.07, 838432586543515816
    x = np.round(_ecg(3000) * 1000).astype(int)
    keep = np.ones(len(x), bool)
    keep[1000:1073] = False  # one 73-sample notification lost
    rows = ["Phone timestamp;sensor timestamp [ns];timestamp [ms];ecg [uV]"]
    for k in np.flatnonzero(keep):
        rows.append(f"2026-07-26T21:56:{26 + k // 130:02d}.765;{t0 + int(round(k * 1e9 / fs_true))};"
                    f"{k * 1000 / fs_true:.1f};{x[k]}")
    p = tmp_path / "Polar_H10_ECG.txt"
    p.write_text("\n".join(rows) + "\n")
    assert detect_format(p)[0] == "text"
    s, got = _stream(p)
    assert s.format == "polar" and s.fs == pytest.approx(fs_true, abs=0.01)
    assert len(got) == len(x) and np.isnan(got).sum() == 73 and np.isnan(got[1000:1073]).all()
    np.testing.assert_allclose(got[keep], x[keep] / 1000, rtol=1e-6)
    with pytest.raises(RecordError, match="declared 250 Hz but the time column"):
        open_lead(p, "I", fs=250)


def test_a_binary_file_without_header_asks_for_a_format(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(RecordError, match="name it with --format"):
        open_lead(p, "I")
    with pytest.raises(RecordError, match="no such record or file"):
        open_lead(tmp_path / "nope.csv", "I")


# ---------------- EDF / BDF written by edfio, read through pyedflib ----------------

def _write_edf(path, bdf=False, kind=None):
    edfio = pytest.importorskip("edfio")
    x = _ecg(500 * 30)
    dr = (-(1 << 23), (1 << 23) - 1) if bdf else (-32768, 32767)  # BDF: 24-bit samples
    Signal, File = (edfio.BdfSignal, edfio.Bdf) if bdf else (edfio.EdfSignal, edfio.Edf)
    sigs = [Signal(x * 1000, sampling_frequency=500, label="ECG I", physical_dimension="uV",
                            physical_range=(-10000, 10000), digital_range=dr),
            Signal(np.resize(x, 250 * 30), sampling_frequency=250, label="Resp",
                            physical_dimension="Ohm", physical_range=(-10000, 10000),
                            digital_range=dr)]
    File(sigs).write(path)
    if kind:
        b = bytearray(path.read_bytes())
        b[192:197] = kind.encode()
        path.write_bytes(bytes(b))
    return (edfio.read_bdf if bdf else edfio.read_edf)(path).signals[0].data / 1000


@pytest.mark.parametrize("ext", ["edf", "bdf"])
def test_edf_and_bdf_stream_what_edfio_reads(tmp_path, ext):
    pytest.importorskip("pyedflib")
    p = tmp_path / f"holter.{ext}"
    ref = _write_edf(p, bdf=ext == "bdf")
    assert detect_format(p)[0] == "edf"
    s, got = _stream(p, "I", 0.9)
    assert s.meta["library"] == "pyedflib" and s.fs == 500 and s.lead == "ECG I"
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    with pytest.raises(RecordError, match=r"signals at different rates"):
        read_record(p, leads=["ECG I", "Resp"])
    with pytest.raises(RecordError, match="'Resp' is in 'Ohm', not a voltage"):
        open_lead(p, "Resp")


def test_discontinuous_edf_is_refused(tmp_path):
    pytest.importorskip("pyedflib")
    p = tmp_path / "d.edf"
    _write_edf(p, kind="EDF+D")
    with pytest.raises(RecordError, match=r"d.edf: a discontinuous EDF\+D file"):
        open_lead(p, "I")

