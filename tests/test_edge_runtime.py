"""One runtime: a plain ``edge-run`` device is a gateway of one; one validation, one summary, coded errors."""
from __future__ import annotations

import json

import pytest

from test_edge_support import model_bundle, record_path, run_cli

from selfmis.edge_runtime import gateway, runtime
from selfmis.edge_runtime.sources.base import DeviceLost, SourceError, SourceNotFound
from selfmis.exit_codes import CodedError, ExitCode

MI_500 = record_path(271, hr=True)
needs_data = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")


@pytest.fixture(scope="module")
def bundle():
    return model_bundle()


@pytest.fixture
def gateways(monkeypatch):
    """Every Gateway that runs, with its `tagged` flag and its device count."""
    seen, real = [], gateway.Gateway.run

    def spy(self):
        seen.append((self.tagged, len(self.devices)))
        return real(self)
    monkeypatch.setattr(gateway.Gateway, "run", spy)
    return seen


@needs_data
@pytest.mark.parametrize("extra, tagged, n", [
    ([], False, 1),
    (["--device-id", "bed1"], True, 1),
    (["--simulate", MI_500 or "x"], True, 2),
], ids=["plain", "one-named", "two"])
def test_every_cli_path_is_the_one_gateway(bundle, capsys, gateways, extra, tagged, n):
    code, ev = run_cli(["--simulate", MI_500, "--fast", "--model", bundle] + extra, capsys)
    assert code == 0 and gateways == [(tagged, n)]
    summaries = [e for e in ev if e["type"] == "summary"]
    assert len(summaries) == n
    for s in summaries:  # one summary for one device or many: rate and start-up included
        assert {"rate", "startup_s", "model", "source", "latency_ms"} <= set(s)
        assert ("device" in s) == tagged


@needs_data
@pytest.mark.parametrize("extra", [[], ["--simulate", MI_500 or "x"], ["--serve", "127.0.0.1:0"]],
                         ids=["plain", "two", "serve"])
@pytest.mark.parametrize("bad, message", [
    (["--retries", "-1"], "--retries must be >= 0"),
    (["--threads", "0"], "must be >= 1"),
    (["--persist-s", "-1"], "--persist-s"),
    (["--format", "csv"], "--format applies to --replay only"),
    (["--ascii"], "--ascii applies to --port only"),
], ids=["retries", "threads", "persist", "format", "ascii"])
def test_one_validation_for_one_device_or_many(bundle, capsys, gateways, extra, bad, message):
    from selfmis.edge_runtime import cli
    assert cli.main(["--simulate", MI_500, "--fast", "--model", bundle] + extra + bad) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == "" and gateways == [] and message in err


def test_usage_messages_name_the_problem(capsys):
    from selfmis.edge_runtime import cli
    assert cli.main(["--simulate", "x", "--simulate", "y", "--retries", "-1"]) == ExitCode.USAGE
    assert "--retries must be >= 0" in capsys.readouterr().err
    assert cli.main(["--simulate", "x", "--device-id", "a", "--ascii"]) == ExitCode.USAGE
    assert "device a: --ascii applies to --port only" in capsys.readouterr().err
    assert cli.main([]) == ExitCode.USAGE
    assert "give a source" in capsys.readouterr().err


def test_errors_carry_their_exit_code():
    assert SourceNotFound("x").exit_code == ExitCode.SOURCE == 4
    assert DeviceLost("x").exit_code == SourceError("x").exit_code == ExitCode.LOST == 5
    assert isinstance(SourceNotFound("x"), CodedError)
    assert runtime.UsageError("x").exit_code == 2 and runtime.ModelError("x").exit_code == 3
    assert runtime.OutletError("x").exit_code == ExitCode.OUTLET == 6


@needs_data
def test_a_missing_model_and_a_missing_source_exit_with_their_codes(bundle, capsys, tmp_path):
    code, _ = run_cli(["--simulate", MI_500, "--fast", "--model", str(tmp_path / "none")], capsys)
    assert code == ExitCode.MODEL
    for extra in ([], ["--device-id", "a"]):
        code, _ = run_cli(["--replay", str(tmp_path / "nothing"), "--fast", "--model", bundle] + extra, capsys)
        assert code == ExitCode.SOURCE


@needs_data
def test_gateway_recordings_hold_beats_and_decisions_too(bundle, capsys, tmp_path):
    from selfmis.edge_runtime.recording import read_recording
    code, ev = run_cli(["--simulate", MI_500, "--simulate", MI_500, "--fast", "--quiet", "--model", bundle,
                        "--record", str(tmp_path / "rec")], capsys)
    assert code == 0
    for dev in {e["device"] for e in ev}:
        outs = [o for o in read_recording(tmp_path / "rec" / dev, outputs=True) if hasattr(o, "events")]
        kinds = {e["type"] for o in outs for e in o.events}
        assert {"beat", "decision"} <= kinds, kinds
        meta = json.loads((tmp_path / "rec" / dev / "recording.json").read_text())
        assert meta["device"] == dev


@needs_data
def test_max_seconds_cuts_every_device_at_the_same_signal_time(bundle, capsys):
    code, alone = run_cli(["--simulate", MI_500, "--fast", "--model", bundle, "--max-seconds", "6"], capsys)
    code2, two = run_cli(["--simulate", MI_500, "--simulate", MI_500, "--fast", "--model", bundle,
                          "--max-seconds", "6"], capsys)
    assert code == code2 == 0
    want = [e["t"] for e in alone if e["type"] == "beat"]
    for dev in {e["device"] for e in two}:
        assert [e["t"] for e in two if e["type"] == "beat" and e["device"] == dev] == want
