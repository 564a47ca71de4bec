"""The numpy WFDB reader against the wfdb library on wfdb-python's own sample records, and the EDF
reader against a second library: the same signal up to float32 rounding, or a documented refusal.

Data: tests/data/wfdb-conformance (vendored; see its README). A silent difference fails.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from selfmis.readers import RecordError, open_lead, read_record
from selfmis.readers.record import is_voltage_unit, unit_scale_to_mv

wfdb = pytest.importorskip("wfdb")

# vendored in the repository (tests/data/wfdb-conformance: source, license, what was trimmed)
DATA = Path(os.environ.get("SELFMIS_CONFORMANCE", Path(__file__).resolve().parent / "data" / "wfdb-conformance"))
RECORDS = sorted(p.stem for p in DATA.glob("*.hea"))
assert RECORDS, f"no conformance records at {DATA}"

# The only refusals: a lead that is not a voltage is never streamed as an ECG (read_record keeps it).
REFUSED_STREAMS = {
    ("03700181", "ABP"): "in 'mmHg', not a voltage",
    ("a103l", "PLETH"): "in 'NU', not a voltage",
    ("v102s", "PLETH"): "in 'NU', not a voltage",
    ("v102s", "RESP"): "in 'NU', not a voltage",
}
RTOL = 2.0 ** -23  # one float32 rounding of the physical value


def _same(got, ref, what):
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: {got.shape} samples, wfdb {ref.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{what}: invalid samples differ"
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=RTOL, atol=0, err_msg=what)


def _check_record(base: str, name: str):
    ref = wfdb.rdrecord(base, physical=True, smooth_frames=False)
    for j, lead in enumerate(ref.sig_name):
        want = ref.e_p_signal[j] * unit_scale_to_mv(ref.units[j])
        rec = read_record(base, leads=[lead])
        assert rec.fs == pytest.approx(ref.fs * ref.samps_per_frame[j])
        _same(rec.lead(lead), want, f"{name} {lead} (read_record)")
        refusal = REFUSED_STREAMS.get((name, lead))
        if refusal or not is_voltage_unit(ref.units[j]):
            with pytest.raises(RecordError, match=re.escape(refusal or "not a voltage")):
                open_lead(base, lead)
            continue
        for chunk_s in (0.37, 60.0):  # odd chunks cross every block and 212/310/311 group boundary
            s = open_lead(base, lead, chunk_s)
            assert s.fs == pytest.approx(ref.fs * ref.samps_per_frame[j])
            _same(np.concatenate(list(s)), want, f"{name} {lead} (streamed, {chunk_s} s)")


@pytest.mark.parametrize("name", RECORDS)
def test_wfdb_record_agrees_with_wfdb(name):
    _check_record(str(DATA / name), name)


def test_every_refusal_is_documented():
    """Every stream refused above is listed (so a new refusal cannot hide in a pass)."""
    for (name, lead) in REFUSED_STREAMS:
        assert name in RECORDS


@pytest.mark.parametrize("name", RECORDS)
def test_header_without_sample_count(name, tmp_path):
    """``*-no-len``: the sample count comes from the first signal file's size, as in wfdb."""
    lines = (DATA / f"{name}.hea").read_text(encoding="latin-1").splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip() and not ln.startswith("#"))
    head = lines[i].split()
    lines[i] = " ".join(head[:3])  # name nsig fs: no sample count, no base time
    (tmp_path / f"{name}.hea").write_text("\n".join(lines) + "\n", encoding="latin-1")
    for f in {ln.split()[0] for ln in lines[i + 1:] if ln.strip() and not ln.startswith("#")}:
        os.symlink(DATA / f, tmp_path / f)
    _check_record(str(tmp_path / name), name)


def test_refusals_name_the_file_and_the_feature(tmp_path, monkeypatch):
    src = DATA / "100.hea"
    cases = {
        "seg": ("seg/2 1 360 1000\n100 500\n100 500\n", "multi-segment"),
        "f516": ("f516 1 360 1000\n100.dat 516 200 16 0 0 0 0 I\n", "WFDB format 516"),
        "extra": ("extra 1 360 1000\n100.dat 212 200 11 1024 995 -22131 0 I\nstray line\n",
                  "after the 1 signal lines"),
        "badgain": ("badgain 1 360 1000\n100.dat 212 abc 11 1024 995 -22131 0 I\n", "malformed gain"),
        "short": ("short 1 360 99999999\n100.dat 16 200 16 0 0 0 0 I\n", "truncated"),
    }
    shutil.copy(DATA / "100.dat", tmp_path / "100.dat")
    monkeypatch.setitem(sys.modules, "wfdb", None)  # a gateway: no wfdb to fall back to
    for name, (hea, what) in cases.items():
        (tmp_path / f"{name}.hea").write_text(hea)
        with pytest.raises(RecordError, match=re.escape(what)) as exc:
            open_lead(tmp_path / name, "I")
        assert f"{name}.hea" in str(exc.value) or "100.dat" in str(exc.value)
        if what in ("multi-segment", "WFDB format 516"):
            assert "install the wfdb library" in str(exc.value)
    assert src.exists()


def test_multi_segment_record_falls_back_to_wfdb(tmp_path):
    """Where wfdb is importable, what the numpy reader refuses is read through it."""
    ref = read_record(DATA / "100").signal[:1400, :1].astype(np.float64)
    for k in (0, 1):
        wfdb.wrsamp(f"seg{k}", fs=360, units=["mV"], sig_name=["I"], p_signal=ref[k * 700:(k + 1) * 700],
                    fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    (tmp_path / "ms.hea").write_text("ms/2 1 360 1400\nseg0 700\nseg1 700\n")
    got = np.concatenate(list(open_lead(tmp_path / "ms", "I", 0.5)))
    np.testing.assert_allclose(got, ref[:, 0], atol=0.5 / 200)
    assert read_record(tmp_path / "ms").signal.shape == (1400, 1)


# ---------------- EDF / EDF+ / BDF ----------------

def _edf_by_spec(path):
    """An independent decode from the EDF spec (header fields, int16 data records): the test's own."""
    b = Path(path).read_bytes()
    ns = int(b[252:256])
    nrec, dur = int(b[236:244]), float(b[244:252])
    f = lambda o, w: [b[o + i * w:o + (i + 1) * w].decode("latin-1").strip() for i in range(ns)]
    o = 256
    labels = f(o, 16); o += 16 * ns + 80 * ns
    dims = f(o, 8); o += 8 * ns
    pmin = [float(x) for x in f(o, 8)]; o += 8 * ns
    pmax = [float(x) for x in f(o, 8)]; o += 8 * ns
    dmin = [float(x) for x in f(o, 8)]; o += 8 * ns
    dmax = [float(x) for x in f(o, 8)]; o += 8 * ns + 80 * ns
    nsamp = [int(x) for x in f(o, 8)]
    data = np.frombuffer(b[256 * (ns + 1):], "<i2")[: nrec * sum(nsamp)].reshape(nrec, sum(nsamp))
    out, c = {}, 0
    for i in range(ns):
        d = data[:, c:c + nsamp[i]].reshape(-1).astype(np.float64)
        c += nsamp[i]
        g = (pmax[i] - pmin[i]) / (dmax[i] - dmin[i])
        out[labels[i]] = ((d - dmin[i]) * g + pmin[i], nsamp[i] / dur, dims[i])
    return out


def test_edf_test_generator_agrees_with_the_spec_and_edfio():
    edfio = pytest.importorskip("edfio")
    path = DATA / "test_generator_2.edf"
    spec = _edf_by_spec(path)
    rec = read_record(path)
    assert "ECG" in rec.lead_names and rec.fs == 200
    lib = {s.label: s.data for s in edfio.read_edf(path).signals}
    for lead in rec.lead_names:
        x, fs, dim = spec[lead]
        _same(rec.lead(lead), x * unit_scale_to_mv(dim), f"test_generator_2 {lead}")
        np.testing.assert_allclose(rec.lead(lead), lib[lead] * 1e-3, rtol=1e-6, atol=1e-9)
    streamed = np.concatenate(list(open_lead(path, "ECG", 0.77)))
    np.testing.assert_array_equal(streamed, rec.lead("ECG"))
    # signals in '°' (not a voltage) are left out of the record, and refused as a lead
    assert "sine 15 Hz" not in rec.lead_names
    with pytest.raises(RecordError, match="not a voltage"):
        open_lead(path, "sine 15 Hz")


def test_edf_annotations_only_is_refused():
    with pytest.raises(RecordError, match="no voltage signals"):
        read_record(DATA / "test_edfann.edf")
    with pytest.raises(RecordError, match="no signals"):
        open_lead(DATA / "test_edfann.edf", "I")


def test_checksums_are_verified(tmp_path, caplog):
    """Every conformance record's header checksums match (no warning); a changed byte is reported."""
    import logging
    caplog.set_level(logging.WARNING, logger="selfmis.readers")
    for name in RECORDS:
        read_record(DATA / name, leads=[wfdb.rdheader(str(DATA / name)).sig_name[0]])
    assert "checksum" not in caplog.text
    shutil.copy(DATA / "100.hea", tmp_path / "100.hea")
    b = bytearray((DATA / "100.dat").read_bytes())
    b[3000] ^= 0x01
    (tmp_path / "100.dat").write_bytes(bytes(b))
    rec = read_record(tmp_path / "100")
    assert "checksum" in caplog.text and "may be damaged" in caplog.text
    assert rec.meta["checksum_ok"] is False
