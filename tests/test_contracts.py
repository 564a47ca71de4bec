"""The contracts between training and serving: preprocessing, records, bundles."""
import json

import numpy as np
import pytest

from selfmis import preprocess as pp
from selfmis.bundle import (BundleError, ModelCard, TensorSpec, load_bundle,
                                         write_bundle)
from selfmis.readers import RecordError, read_record


@pytest.mark.parametrize("fs_in", [130, 250, 360, 500, 100])
def test_stream_resampler_is_chunk_invariant(fs_in):
    x = np.random.default_rng(0).normal(size=2000)
    rs = pp.StreamResampler(fs_in, 100)
    whole = rs.process(x)
    rs.reset()
    sizes = np.random.default_rng(1).integers(1, 60, size=200)
    parts, i = [], 0
    for s in sizes:
        parts.append(rs.process(x[i:i + s]))
        i += s
    parts.append(rs.process(x[i:]))
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    assert abs(len(whole) - 2000 * 100 / fs_in) <= 1


@pytest.mark.parametrize("fs_in", [130, 250, 360, 500])
def test_offline_resample_keeps_a_sine(fs_in):
    t = np.arange(4000) / fs_in
    y = pp.resample(np.sin(2 * np.pi * 5 * t), fs_in, 100)
    rs = pp.StreamResampler(fs_in, 100)
    frac = rs.delay_s - round(rs.delay_s * 100) / 100  # documented sub-sample shift
    ty = np.arange(len(y)) / 100
    assert np.abs(y - np.sin(2 * np.pi * 5 * (ty - frac)))[50:-50].max() < 0.01


def test_resampler_rejects_aliasing():
    # above the 100 Hz model rate's Nyquist a tone must vanish, not fold back into the band
    t = np.arange(5000) / 500
    for f in (55, 70, 120):
        y = pp.resample(np.sin(2 * np.pi * f * t), 500, 100)
        assert np.abs(y[50:-50]).max() < 0.01, f


def test_bandpass_removes_wander_and_keeps_qrs_band():
    fs, t = 100.0, np.arange(500) / 100.0
    wander = 2.0 * np.sin(2 * np.pi * 0.1 * t) + 0.5 * t
    tone = np.sin(2 * np.pi * 10 * t)
    y = pp.bandpass(wander + tone, fs)
    assert np.abs(y - tone)[50:-50].max() < 0.1
    hf = pp.bandpass(np.sin(2 * np.pi * 48 * t), fs)
    assert np.abs(hf)[50:-50].max() < 0.1  # >20 dB down; the rest is the window's leakage


def test_preprocess_window_is_scale_free_and_handles_flat_and_nan():
    x = np.random.default_rng(2).normal(size=(12, 500)).astype(np.float32)
    a, b = pp.preprocess_window(x), pp.preprocess_window(x * 1000 + 7)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a.std(-1), 1, atol=1e-3)
    assert np.all(pp.preprocess_window(np.zeros(500)) == 0)
    x[0, 10:20] = np.nan
    assert np.isfinite(pp.preprocess_window(x)).all()


def test_spec_round_trip():
    s = pp.PreprocessSpec(window_s=4.0)
    assert pp.PreprocessSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.window_samples == 400


def test_record_reader_matches_wfdb(bundled_ptbxl):
    wfdb = pytest.importorskip("wfdb")
    for name in ("records100/01000/01737_lr", "records500/00000/00271_hr"):
        rec = read_record(bundled_ptbxl / name)
        sig, meta = wfdb.rdsamp(str(bundled_ptbxl / name))
        np.testing.assert_allclose(rec.signal, sig, atol=1e-6)
        assert rec.fs == meta["fs"] and rec.lead_names == meta["sig_name"]
        assert rec.lead("i").shape == (sig.shape[0],)


def test_record_reader_format_212_and_csv(tmp_path):
    wfdb = pytest.importorskip("wfdb")
    sig = np.random.default_rng(3).normal(0, 0.5, (700, 2))
    wfdb.wrsamp("r212", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=sig,
                fmt=["212", "212"], adc_gain=[200.0, 200.0], baseline=[1024, 1024], write_dir=str(tmp_path))
    ref, _ = wfdb.rdsamp(str(tmp_path / "r212"))
    rec = read_record(tmp_path / "r212")
    np.testing.assert_allclose(rec.signal, ref, atol=1e-6)
    csv = tmp_path / "x.csv"
    csv.write_text("# fs=250\ntime,I\n0,0.1\n0.004,0.2\n")
    rec = read_record(csv)
    assert rec.fs == 250 and rec.lead_names == ["I"] and rec.signal[:, 0].tolist() == pytest.approx([0.1, 0.2])


def test_record_reader_errors_name_the_file(tmp_path, bundled_ptbxl):
    with pytest.raises(RecordError, match="no such record"):
        read_record(tmp_path / "nope")
    src = bundled_ptbxl / "records100/01000/01737_lr"
    (tmp_path / "t_lr.hea").write_text((src.parent / "01737_lr.hea").read_text().replace("01737_lr", "t_lr"))
    (tmp_path / "t_lr.dat").write_bytes((src.parent / "01737_lr.dat").read_bytes()[:1000])
    with pytest.raises(RecordError, match=r"t_lr.dat: truncated"):
        read_record(tmp_path / "t_lr")
    with pytest.raises(RecordError, match="no lead"):
        read_record(src).lead("X")


def _card(**kw):
    spec = pp.PreprocessSpec()
    d = dict(name="t", lead="I", labels=["MI"], preprocessing=spec.to_dict(),
             input=TensorSpec("x", [1, 500, 1], "int8", "NWC", 0.05, 0),
             output=TensorSpec("y", [1, 1], "int8", "", 0.1, 3))
    d.update(kw)
    return ModelCard(**d)


def test_bundle_round_trip_and_tamper_detection(tmp_path):
    fake = b"\x1c\x00\x00\x00TFL3" + bytes(100)
    b = write_bundle(tmp_path / "b", fake, _card())
    assert b.card.file_size == len(fake) and len(b.card.sha256) == 64
    back = load_bundle(tmp_path / "b")
    assert back.card.to_dict() == b.card.to_dict() and back.card.spec.window_samples == 500
    (tmp_path / "b" / "model.tflite").write_bytes(fake + b"x")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(tmp_path / "b")


def test_bundle_refuses_bad_cards_and_files(tmp_path):
    with pytest.raises(BundleError, match="no model card"):
        load_bundle(tmp_path)
    write_bundle(tmp_path / "c", b"not a flatbuffer at all", _card())
    with pytest.raises(BundleError, match="not a TFLite"):
        load_bundle(tmp_path / "c")
    card = json.loads((tmp_path / "c" / "card.json").read_text())
    card["format_version"] = 99
    (tmp_path / "c" / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="newer"):
        load_bundle(tmp_path / "c")
    del card["labels"]
    card["format_version"] = 1
    (tmp_path / "c" / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="lacks"):
        load_bundle(tmp_path / "c")


def test_stream_lead_equals_read_record_in_any_chunking(bundled_ptbxl, tmp_path):
    from selfmis.readers import stream_lead

    for name in ("records500/00000/00271_hr", "records100/01000/01737_lr"):
        ref = read_record(bundled_ptbxl / name).lead("I")
        for chunk_s in (0.013, 1.0, 7.0, 100.0):
            fs, rec_name, chunks = stream_lead(bundled_ptbxl / name, "I", chunk_s)
            got = np.concatenate(list(chunks))
            np.testing.assert_array_equal(got, ref)
    csv = tmp_path / "x.csv"
    csv.write_text("# fs=100\nI\n" + "\n".join(str(v / 10) for v in range(250)) + "\n")
    fs, _, chunks = stream_lead(csv, "I", 1.0)
    assert fs == 100 and [len(c) for c in chunks] == [100, 100, 50]
    with pytest.raises(RecordError, match="no lead"):
        stream_lead(bundled_ptbxl / "records100/01000/01737_lr", "X")
