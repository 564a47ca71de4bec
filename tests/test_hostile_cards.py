"""Hostile peers, part 2: crafted model cards, configs and releases (signed with OpenSSH).

Cards: every rule of :mod:`selfmis.card_schema` broken once on a copy of the shipped bundle,
refused at load with exit code 3 by ``edge-run``; the shipped cards pass; an older card
without sha256 is refused with the re-seal command, which works. Configs: 100,000-deep JSON.
Releases: ``ssh-keygen -Y sign``/``-Y verify`` for real; a re-hashed tampered release and an
unsigned one are refused (a gateway without an allowed_signers file refuses every release
unless --allow-unsigned); a gzip bomb and a
member-count bomb are refused before anything is unpacked. CI cost: ~25 s.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from selfmis.bundle import BundleError, load_bundle
from selfmis.edge_runtime.models import default_bundle_dir
from selfmis.exit_codes import ExitCode

REPO = Path(__file__).resolve().parent.parent
RECORD = str(REPO / "core/sample_data/ptbxl/records500/00000/00271_hr")


def _copy(tmp_path, edit=None, name="b") -> Path:
    d = tmp_path / name
    shutil.copytree(default_bundle_dir(), d)
    if edit is not None:
        card = json.loads((d / "card.json").read_text())
        edit(card)
        (d / "card.json").write_text(json.dumps(card))
    return d


def _set(path, value):
    def edit(card):
        *head, last = path.split(".")
        node = card
        for k in head:
            node = node[k]
        node[last] = value
    return edit


CRAFTED = {
    "nan_calibration": (_set("calibration.MI.a", float("nan")), "calibration.MI.a"),
    "inf_threshold": (_set("thresholds.MI", float("inf")), "thresholds.MI"),
    "nan_operating_point": (_set("operating_points.alarm.thresholds.MI", float("nan")), "operating_points.alarm"),
    "threshold_above_one": (_set("thresholds.MI", 1.5), "thresholds.MI"),
    "fewer_labels": (lambda c: c["labels"].pop(), "labels"),
    "duplicate_labels": (lambda c: c["labels"].__setitem__(1, "MI"), "labels"),
    "band_low_above_high": (_set("preprocessing.low_hz", 45.0), "preprocessing"),
    "band_above_nyquist": (_set("preprocessing.high_hz", 60.0), "preprocessing"),
    "fs_nan": (_set("preprocessing.fs", float("nan")), "preprocessing.fs"),
    "fs_2e7": (_set("preprocessing.fs", 2e7), "preprocessing.fs"),
    "window_not_the_input": (_set("preprocessing.window_s", 6.0), "input.shape"),
    "model_outside": (_set("model_file", "../../etc/passwd"), "model_file"),
    "model_absolute": (_set("model_file", "/etc/passwd"), "model_file"),
    "bad_sha_text": (_set("sha256", "zz"), "sha256"),
    "output_scale_nan": (_set("output.scale", float("nan")), "output.scale"),
    "labels_not_a_list": (_set("labels", "MI"), "labels"),
    "format_version_text": (_set("format_version", "1; rm -rf"), "format_version"),
    "unknown_default_point": (_set("default_operating_point", "panic"), "default_operating_point"),
}


def test_the_shipped_cards_pass_the_schema():
    for name in ("default", "micro"):
        b = load_bundle(default_bundle_dir().parent / name)
        assert len(b.card.labels) == 11 and b.card.sha256


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_cards_are_refused_at_load_naming_the_field(tmp_path, case):
    edit, field = CRAFTED[case]
    d = _copy(tmp_path, edit)
    with pytest.raises(BundleError) as e:
        load_bundle(d)
    assert field in str(e.value) and "card.json" in str(e.value)
    assert e.value.exit_code == ExitCode.MODEL


@pytest.mark.parametrize("case", ["nan_calibration", "fs_nan", "fewer_labels", "model_outside"])
def test_edge_run_exits_3_on_a_crafted_card(tmp_path, capsys, case):
    from selfmis.edge_runtime import cli
    d = _copy(tmp_path, CRAFTED[case][0])
    assert cli.main(["--model", str(d), "--replay", RECORD, "--fast", "--quiet"]) == ExitCode.MODEL
    assert CRAFTED[case][1] in capsys.readouterr().err


def test_a_model_file_that_links_out_of_the_bundle_is_refused(tmp_path):
    d = _copy(tmp_path)
    outside = tmp_path / "elsewhere.tflite"
    shutil.move(d / "model.tflite", outside)
    (d / "model.tflite").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(d)


def test_an_old_card_without_sha256_says_how_to_reseal_and_the_command_works(tmp_path):
    d = _copy(tmp_path, lambda c: c.pop("sha256"))
    with pytest.raises(BundleError, match=r"selfmis bundle reseal"):
        load_bundle(d)
    from selfmis.cli import main as selfmis
    assert selfmis(["bundle", "check", str(d)]) == ExitCode.MODEL
    assert selfmis(["bundle", "reseal", str(d)]) == 0
    assert load_bundle(d).card.sha256 == load_bundle(default_bundle_dir()).card.sha256
    # re-sealing never launders a card that breaks another rule
    bad = _copy(tmp_path, lambda c: (c.pop("sha256"), c["thresholds"].__setitem__("MI", float("nan"))), "bad")
    assert selfmis(["bundle", "reseal", str(bad)]) == ExitCode.MODEL


def test_decisions_skip_non_finite_beats():
    import numpy as np
    from selfmis.edge_runtime.decision import RollingDecision
    card = load_bundle(default_bundle_dir()).card
    d = RollingDecision.from_card(card, min_beats=1)
    assert d.add(np.full(len(card.labels), np.nan), 1.0) is None
    out = d.add(np.full(len(card.labels), 0.9), 2.0)
    assert all(np.isfinite(v) for v in out["probabilities"].values())


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("kind", ["runtime", "gateway"])
def test_a_100000_deep_config_is_a_usage_error_not_a_recursion_error(tmp_path, capsys, kind):
    from selfmis.edge_runtime import cli
    p = tmp_path / "deep.json"
    head = '{"format": "selfmis-gateway-config", "devices": [], "x": ' if kind == "gateway" else ""
    p.write_text(head + "[" * 100_000 + "]" * 100_000 + ("}" if head else ""))
    assert cli.main(["--config", str(p)]) == ExitCode.USAGE
    assert "nested deeper" in capsys.readouterr().err


def test_gateway_config_loader_refuses_depth_and_bad_rates(tmp_path):
    from selfmis.edge_runtime.gateway_config import GatewayConfigError, load_gateway_config
    p = tmp_path / "g.json"
    p.write_text('{"format": "selfmis-gateway-config", "devices": [' + "[" * 5000 + "]" * 5000 + "]}")
    with pytest.raises(GatewayConfigError, match="nested deeper"):
        load_gateway_config(p)
    p.write_text(json.dumps({"format": "selfmis-gateway-config", "format_version": 1,
                             "devices": [{"id": "a", "port": "/dev/x", "fs": 1e9}]}))
    with pytest.raises(GatewayConfigError, match="fs"):
        load_gateway_config(p)


# ----------------------------------------------------------------------------- signed releases

@pytest.fixture(scope="module")
def release_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(d / "k")],
                   check=True)
    return d / "k"


def _pack(tmp_path, key, version="1.0.0", name="r.tar.gz"):
    from selfmis.firmware_bridge import deploy
    out = tmp_path / name
    deploy.pack_bundle(default_bundle_dir(), out, version, sign_key=key)
    return out


def test_signed_release_installs_and_tampered_or_unsigned_ones_are_refused(tmp_path, release_key):
    from selfmis.firmware_bridge import deploy
    from selfmis.firmware_bridge.gateway_ops import DeployError
    root = tmp_path / "gw"
    deploy.trust(root, str(release_key) + ".pub")
    good = _pack(tmp_path, release_key)
    assert deploy.verify_archive(good, root / "allowed_signers")["signed_by"] == "release"
    r = deploy.push(good, root)
    assert r["activated"] and r["signed_by"] == "release"
    # the attacker swaps card.json and re-hashes the manifest (the signature stays the old one)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(good) as t:
        members = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    card = json.loads(members["card.json"])
    card["operating_points"]["alarm"]["thresholds"]["MI"] = 1.0  # silence the alarm
    members["card.json"] = json.dumps(card).encode()
    man = json.loads(members["MANIFEST.json"])
    import hashlib
    man["version"] = "1.0.1"
    man["files"]["card.json"] = {"sha256": hashlib.sha256(members["card.json"]).hexdigest(),
                                 "size": len(members["card.json"])}
    members["MANIFEST.json"] = (json.dumps(man, indent=2, sort_keys=True) + "\n").encode()
    _write_tar(evil, members.items())
    with pytest.raises(DeployError, match="does not verify"):
        deploy.push(evil, root)
    unsigned = tmp_path / "unsigned.tar.gz"
    deploy.pack_bundle(default_bundle_dir(), unsigned, "1.0.2")
    with pytest.raises(DeployError, match="not signed"):
        deploy.push(unsigned, root, allow_unsigned=True)  # the opt-out never overrides allowed_signers
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    with pytest.raises(DeployError, match="no key"):
        deploy.push(_pack(tmp_path, other, "1.0.3", "o.tar.gz"), root)
    assert deploy.status(root)["current"] == "1.0.0"


def _write_tar(path, members, gz_level=6):
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=gz_level) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_gzip_bomb_is_refused_before_anything_is_unpacked(tmp_path):
    from selfmis.firmware_bridge import deploy
    from selfmis.firmware_bridge.gateway_ops import DeployError
    bomb = tmp_path / "bomb.tar.gz"
    size = 1 << 30  # 1 GiB of zeros in one member: ~1 MB compressed
    header = tarfile.TarInfo("model.tflite")
    header.size = size
    mib = gzip.compress(bytes(1 << 20), 9)  # concatenated gzip members read as one stream (RFC 1952)
    with open(bomb, "wb") as fh:
        fh.write(gzip.compress(header.tobuf()))
        for _ in range(size >> 20):
            fh.write(mib)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    with pytest.raises(DeployError, match="over the cap"):
        deploy.verify_archive(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6 and not list(tmp_path.glob("**/model.tflite")), peak


def test_too_many_members_are_refused(tmp_path):
    from selfmis.firmware_bridge import deploy
    from selfmis.firmware_bridge.gateway_ops import DeployError
    p = tmp_path / "many.tar.gz"
    _write_tar(p, [(f"f{i}", b"x") for i in range(100)])
    with pytest.raises(DeployError, match="more than 16 members"):
        deploy.verify_archive(p)


def test_torch_checkpoints_load_with_weights_only(tmp_path):
    import torch
    from selfmis.train.checkpoint import CheckpointError, load_checkpoint

    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))
    p = tmp_path / "evil.pt"
    torch.save({"model": Boom()}, p)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(p)  # weights_only=True: the pickle's code never runs
    assert not (tmp_path / "pwned").exists()
