"""`selfmis deploy` for a multi-device install: gateway.json written, validated by edge-run's own
validator, shipped in a release and run by the real edge-run."""
from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from service_support import EDGE_RUN, events, of
from test_edge_support import model_bundle, quiet_env, record_path

from selfmis.bundle import load_bundle
from selfmis.exit_codes import ExitCode
from selfmis.edge_runtime.gateway_config import GatewayConfigError, load_gateway_config
from selfmis.firmware_bridge import deploy
from selfmis.firmware_bridge.deploy_gateway import build_gateway_config, parse_device_spec

MI_500 = record_path(271, hr=True)
needs_data = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")


@pytest.mark.parametrize("spec, want", [
    ("bed1=/dev/ttyUSB0", {"id": "bed1", "port": "/dev/ttyUSB0"}),
    ("w=socket://10.0.0.7:7000,retries=10,ascii=true,fs=250",
     {"id": "w", "port": "socket://10.0.0.7:7000", "retries": 10, "ascii": True, "fs": 250}),
    ("strap=ble:AA:BB:CC:DD:EE:FF", {"id": "strap", "ble": "AA:BB:CC:DD:EE:FF"}),
    ("demo=simulate:rec/00271_hr,speed=2", {"id": "demo", "simulate": "rec/00271_hr", "speed": 2}),
    ("com=COM3,lead=I", {"id": "com", "port": "COM3", "lead": "I"}),
])
def test_device_specs(spec, want):
    assert parse_device_spec(spec) == want


@pytest.mark.parametrize("devices, kw, message", [
    (["bed1"], {}, "expected ID=SOURCE"),
    (["bed1=/dev/ttyUSB0,baud"], {}, "is not KEY=VALUE"),
    (["bed1=/dev/ttyUSB0,port=/dev/x"], {}, "port is given by ID=SOURCE"),
    (["bed1=/dev/ttyUSB0,baud=fast"], {}, "devices[0].baud: expected an integer"),
    (["bed 1=/dev/ttyUSB0"], {}, "is not a valid id"),
    (["a=/dev/ttyUSB0", "a=/dev/ttyUSB1"], {}, "already used by devices[0]"),
    (["a=/dev/ttyUSB0"], {"mqtt": "http://broker"}, "must start with mqtt://"),
    (["a=/dev/ttyUSB0"], {"serve": "0.0.0.0:8080"}, "is not loopback: give --serve-token"),
])
def test_bad_configs_are_refused_with_the_validators_words(devices, kw, message):
    with pytest.raises(GatewayConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_gateway_config(devices, **kw)


def test_cli_writes_what_the_runtime_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --record-root runs: ./runs, as every command-line path
    out = tmp_path / "etc" / "gateway.json"
    code = deploy.main(["gateway-config", "-o", str(out), "--device", "bed1=/dev/ttyUSB0",
                        "--device", "bed2=socket://10.0.0.7:7000,retries=10", "--device", "strap=ble:AA:BB:CC:DD:EE:FF",
                        "--record-root", "runs", "--serve", "0.0.0.0:8080", "--serve-token", "t0k",
                        "--mqtt", "mqtt://gw:pw@broker:1883/ward3", "--restart-cap", "30"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["devices"] == ["bed1", "bed2", "strap"] and printed["outlets"] == ["serve", "mqtt"]
    cfg = load_gateway_config(out)  # edge-run's loader: the file is valid as written
    assert [d["id"] for d in cfg["devices"]] == ["bed1", "bed2", "strap"]
    assert cfg["devices"][1]["retries"] == 10 and cfg["restart_cap_s"] == 30
    assert cfg["devices"][0]["record"] == str((tmp_path / "runs" / "bed1").resolve())
    assert json.loads(out.read_text())["record_root"] == str(tmp_path / "runs")  # outside etc/: absolute
    assert cfg["serve"]["token"] == "t0k" and cfg["mqtt"]["url"].endswith("/ward3")
    # a refused config writes nothing and exits 1 with the reason
    bad = tmp_path / "bad.json"
    assert deploy.main(["gateway-config", "-o", str(bad), "--device", "a=/dev/x,baud=0"]) == ExitCode.USAGE
    assert not bad.exists()


@needs_data
def test_relative_paths_resolve_from_the_written_file(tmp_path, monkeypatch, capsys):
    """The caregiver's try: paths typed relative to the working directory, the file written elsewhere
    (etc/) or beside them; edge-run --config then finds every record (it used to exit 4)."""
    import shutil
    rec = tmp_path / "data" / "rec"
    rec.mkdir(parents=True)
    for ext in (".hea", ".dat"):
        shutil.copy(MI_500 + ext, rec / ("00271_hr" + ext))
    monkeypatch.chdir(tmp_path)
    for out, written in ((tmp_path / "etc" / "gateway.json", str(rec / "00271_hr")),  # outside: absolute
                         (tmp_path / "gateway.json", "data/rec/00271_hr")):          # inside: relative to it
        code = deploy.main(["gateway-config", "-o", str(out.relative_to(tmp_path)),
                            "--device", "demo=simulate:data/rec/00271_hr,fast=true",
                            "--device", "late=replay:data/rec/missing,fast=true", "--record-root", "runs"])
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["warnings"] == [f"devices[1].replay: {rec / 'missing'} does not exist on this machine "
                                       "(edge-run here would exit 4)"]
        raw = json.loads(out.read_text())
        assert raw["devices"][0]["simulate"] == written, raw
        cfg = load_gateway_config(out)
        assert cfg["devices"][0]["simulate"] == str(rec / "00271_hr")
        assert cfg["devices"][0]["record"] == str(tmp_path / "runs" / "demo")
    monkeypatch.chdir("/")  # from anywhere: edge-run reads the file's paths from the file's folder
    raw["devices"] = raw["devices"][:1]
    (tmp_path / "gateway.json").write_text(json.dumps(raw))
    r = subprocess.run(EDGE_RUN + ["--config", str(tmp_path / "gateway.json"), "--quiet", "--model", model_bundle()],
                       capture_output=True, text=True, env=quiet_env(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    assert of(events(r.stdout), "summary", "demo")[0]["decisions"] > 0


@needs_data
def test_a_release_with_gateway_json_runs_two_devices_on_its_own_model(tmp_path):
    """bundle --gateway -> push -> edge-run --config ROOT/current/gateway.json: both devices run,
    on the release's model (the config's model defaults to the release folder)."""
    gw = tmp_path / "gateway.json"
    assert deploy.main(["gateway-config", "-o", str(gw), "--device", f"left=replay:{MI_500},fast=true",
                        "--device", f"right=simulate:{MI_500},fast=true"]) == 0
    archive = tmp_path / "rel.tar.gz"
    assert deploy.main(["bundle", model_bundle(), "-o", str(archive), "--version", "1.2.0",
                        "--gateway", str(gw)]) == 0
    with tarfile.open(archive) as tar:
        shipped = json.load(tar.extractfile("gateway.json"))
    assert shipped["model"] == "." and [d["id"] for d in shipped["devices"]] == ["left", "right"]
    root = tmp_path / "opt"
    assert deploy.main(["push", str(archive), str(root)]) == ExitCode.MODEL  # no allowed_signers: refused
    deploy.push(archive, root, allow_unsigned=True)
    cfg_path = root / "current" / "gateway.json"
    assert load_gateway_config(cfg_path)["model"] == str((root / "current").resolve())
    r = subprocess.run(EDGE_RUN + ["--config", str(cfg_path), "--quiet"], capture_output=True, text=True,
                       env=quiet_env(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    card = load_bundle(root / "current").card
    for did in ("left", "right"):
        s = of(ev, "summary", did)[0]
        assert s["model"] == card.name and s["decisions"] > 0, s
    unit = subprocess.run(EDGE_RUN[:1] + ["-m", "selfmis.firmware_bridge.deploy", "systemd-unit", "--root",
                                          str(root), "--gateway"], capture_output=True, text=True, timeout=60)
    assert f'SELFMIS_EDGE_ARGS=--config {root}/current/gateway.json"' in unit.stdout, unit.stderr


def test_a_bad_gateway_json_is_not_shipped(tmp_path):
    gw = tmp_path / "gateway.json"
    gw.write_text(json.dumps({"devices": [{"id": "a", "port": "/dev/x", "colour": "red"}]}))
    with pytest.raises(deploy.DeployError, match=r"devices\[0\]\.colour: unknown key"):
        deploy.pack_bundle(model_bundle(), tmp_path / "rel.tar.gz", "1.0.0", gateway_config=gw)
    assert not (tmp_path / "rel.tar.gz").exists()
