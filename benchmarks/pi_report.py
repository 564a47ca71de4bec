"""``target_pi.json`` -> ``target_pi.md``: per image, install, import, memory, equality, LSB differences.

Every figure comes from the JSON the run wrote; nothing is typed in here.
"""
from __future__ import annotations

from .pi_armhf import armhf_ok

__all__ = ["markdown", "image_rows", "lsb_text"]


def lsb_text(t: dict) -> str:
    """Per-bundle int8 totals -> '0 LSB: 3 records, 1 LSB: 97 records (max 1; 2.1% of values)'."""
    hist = t.get("lsb_records_histogram") or {}
    parts = [f"{k} LSB: {v}" for k, v in hist.items()]
    share = 100.0 * t["values_differing"] / t["values"] if t.get("values") else 0.0
    return f"{', '.join(parts) or 'n/a'} records (max {t.get('max_lsb')}; {share:.1f}% of values differ)"


def _secs(v) -> str:
    return "not recorded" if v is None else f"{v} s"


def _yes(flag) -> str:
    return "**yes**" if flag else "**NO**"


def image_rows(report: dict) -> list:
    """One row per image x kernels x bundle; each names the commit its wheel was built from (an image
    kept from an earlier run has that run's)."""
    rows = []
    for name, img in report.get("images", {}).items():
        inst = img.get("install", {})
        commit = f"`{(img.get('commit') or report['commit'])['sha'][:12]}`"
        for kernels, rep in img.get("replay", {}).items():
            for bundle, t in rep["compare"]["bundles"].items():
                rows.append([name, commit, f"Python {inst.get('python')}",
                             _secs(inst.get("install_s")) + (" (an earlier run's venv)" if inst.get("reused") else ""),
                             f"{inst.get('import_s_emulated')} s",
                             f"{round((rep.get('peak_rss_kib_emulated') or 0) / 1024, 1)} MB",
                             kernels, bundle, str(t["records"]), f"{t['beats']} / {t['decisions']}",
                             _yes(t["records_events_equal"] == t["records"]),
                             _yes(t["records_decisions_equal"] == t["records"]
                                  and t["records_states_equal"] == t["records"]),
                             lsb_text(t), f"{t['max_prob_diff']:.6f}"])
    return rows


def _table(head, rows) -> list:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _differences(report: dict) -> list:
    out = []
    for name, img in report.get("images", {}).items():
        for kernels, rep in img.get("replay", {}).items():
            for bundle, t in rep["compare"]["bundles"].items():
                for d in t["differences"][:10]:
                    out.append(f"- {name} / {kernels} / {bundle} / `{d['record']}`: events equal {d['events_equal']}, "
                               f"decisions equal {d['decisions_equal']}, states equal {d['states_equal']}; first "
                               f"difference: `{str(d['first_difference'])[:300]}`")
    return out or ["- none: every record's events (beats, quality, decisions, labels, alarm states) are equal."]


def _checks(report: dict) -> list:
    out = []
    for name, img in report.get("images", {}).items():
        inst = img.get("install", {})
        heavy = inst.get("heavy_packages") or []
        if img.get("command"):
            out.append(f"- **{name}** measured by `{img['command']}`{_provenance(img, report)}")
        if inst.get("error"):
            out.append(f"- **{name}**: the install FAILED: `{inst['error'][-600:]}`")
        out.append(f"- **{name}** (Debian {img['suite']} {img['arch']}, debootstrap: {_secs(img.get('bootstrap_s')) if img.get('bootstrap_s') != 'cached' else 'the cached tree'}): "
                   f"sdists built by pip: {inst.get('sdists_built') or 'none'} (a compiler needed: "
                   f"{'yes' if inst.get('sdists_built') else 'no'}); torch/TensorFlow/onnxruntime installed: "
                   f"{heavy or 'none'}; packages: {', '.join(inst.get('packages', []))}")
        sim = img.get("readme_simulate")
        if sim:
            out.append(f"  - the README's first run, as user pi: `{sim['command']}`: exit {sim['exit']}, {sim['beats']} beats, "
                       f"{sim['decisions']} decisions ({sim['model']}): {'ok' if sim['ok'] else 'FAILED'}")
        gw = img.get("gateway")
        if gw:
            out.append(f"  - gateway config, {gw['devices']} devices: exit {gw['exit']}, {gw['summaries']} summaries, "
                       f"signal per device {gw['signal_s_per_device']['min']}-{gw['signal_s_per_device']['max']} s, "
                       f"{gw['decisions']} decisions: {'ok' if gw['ok'] else 'FAILED'}")
        dep = img.get("deploy")
        if dep:
            sv = dep["service"]
            out.append(f"  - `selfmis deploy push` into the tree's /opt/selfmis: current -> `{dep['current']}` "
                       f"(relative: {dep['current_relative']}); `selfmis deploy status` on the Pi exit "
                       f"{dep['status_on_pi']['exit']}; the release runs (`edge-run --config "
                       f"/opt/selfmis/current/runtime.json --replay ...`): exit {dep['release_runs']['exit']}, "
                       f"{dep['release_runs']['decisions']} decisions")
            out.append(f"  - systemd {sv['systemd']}: `systemd-analyze verify` exit {sv['verify_exit']}"
                       f"{' (' + sv['verify_output'][:300] + ')' if sv['verify_output'] else ' (no output)'}; "
                       f"`systemctl enable selfmis-edge` exit {sv['enable_exit']}; {'ok' if dep['ok'] else 'FAILED'}")
            if sv.get("commands"):
                out.append("  - run as root in the tree: " + "; ".join(f"`{c}`" for c in sv["commands"]))
    return out


def _armhf(report: dict) -> list:
    a = report.get("armhf")
    if not a:
        return []
    rows = [[k, v["wheel"] or "none", (v["error"] or "")[:120]] for k, v in a["wheels"].items()]
    g = a["gateway_install"]
    return (["", "## armhf (32-bit Raspberry Pi OS, linux_armv7l)", ""]
            + _table(["package", "wheel on PyPI", "pip says"], rows)
            + ["", f"`{g['command']}`: exit {g['exit']}; " + " / ".join(f"`{e}`" for e in g["errors"])])


def _provenance(img: dict, report: dict) -> str:
    """', an earlier run: commit X, wheel Y' for an image kept from another run than the report's."""
    c, w = img.get("commit") or report["commit"], img.get("wheel") or report["wheel"]
    if c["sha"] == report["commit"]["sha"] and w.get("sha256") == report["wheel"].get("sha256"):
        return ""
    return f" (an earlier run: commit `{c['sha'][:12]}`, wheel sha256 `{str(w.get('sha256'))[:12]}`)"


def _armhf_tree(report: dict) -> list:
    out = []
    for name, a in (report.get("armhf_tree") or {}).items():
        out += ["", f"### {name}: the user's install on the tree ({a['tree']}, Python {a['python']}, "
                    f"`{a['machine']}`)", "",
                f"- measured by `{a.get('command')}`{_provenance(a, report)}",
                f"- `{a['pip_command']}` (as user pi): exit {a['exit']} after {a['seconds_emulated']} s (emulated); "
                + " / ".join(f"`{e[:200]}`" for e in a["errors"][:8]),
                *([f"- pip fetched: {', '.join('`' + d + '`' for d in a['downloaded'])}"] if a.get("downloaded") else []),
                f"- sdists pip built: {a['sdists_built'] or 'none'}; the venv afterwards: "
                f"{', '.join(a['venv_after']) or 'empty'} (selfmis-edge installed: {'YES' if a['selfmis_installed'] else 'no'})",
                "- Debian's own packages (`apt-cache search` in the tree): "
                + "; ".join(f"`{q}`: {', '.join(x.split(' - ')[0] for x in v) or 'none'}"
                            for q, v in a["apt_cache_search"].items()),
                f"- pip failed with nothing installed (or the runtime imports): {'**yes**' if armhf_ok(a) else '**NO**'}"]
    return out


def _kernels(report: dict) -> list:
    k = report.get("kernel_cost_x86")
    if not k:
        return []
    out = ["", "## Kernel modes: cost (x86, native) and agreement", "",
           f"Method: {k['method']} on {k['machine']}. A ratio measured side by side; Pi ratios will differ.", ""]
    rows = [[b, *(str(v["per_window_ms_p50"][m]) for m in ("default", "builtin", "reference")),
             f"{v['reference_vs_default']}x"] for b, v in k.items() if isinstance(v, dict)]
    out += _table(["bundle", "default (XNNPACK) ms", "builtin ms", "reference ms", "reference / default"], rows)
    x = report.get("x86_reference_vs_default")
    if x:
        out += ["", "On x86, reference vs default kernels (same machine): "
                + "; ".join(f"{b}: {lsb_text(t)}, decisions equal in {t['records_decisions_equal']}/{t['records']}"
                            for b, t in x["bundles"].items())]
    return out


def _latency(report: dict) -> list:
    p = report.get("pi_latency")
    if not p:
        return []
    out = ["", "## Latency on a real Pi: UNMEASURED", "",
           f"Emulated time is not Pi time; none is reported above. Measure on the board: `{p['measure_on_the_pi']}`.",
           f"What to expect ({p['status']}; {p['method']}):", ""]
    for board, v in p["boards"].items():
        out.append(f"- {board}: " + ", ".join(f"{b} ~{ms} ms per window" for b, ms in v.items()))
    return out


def markdown(report: dict) -> str:
    c = report["commit"]
    head = ["image", "commit", "Python", "install", "import (emulated)", "peak RSS (emulated)", "kernels", "bundle", "records",
            "beats / decisions", "events equal", "decisions + alarm states equal", "int8 difference per record",
            "max probability difference"]
    lines = ["# The gateway on emulated Raspberry Pi images (arm64) vs x86", "",
             f"- commit: `{c['sha'][:12]}` ({c['describe']}){' + uncommitted changes' if c.get('dirty') else ''}",
             f"- command: `{report['command']}` (as root; `make target-pi`)",
             f"- data: {report['data']['bundled']}; {report['data']['subset']} "
             f"({len(report['data']['records'])} records in all, listed in target_pi.json)",
             f"- each record: `edge-run {report['edge_run_options']}` through `selfmis.benchmarks.pi_probe` "
             "(the raw int8 output of every invoke captured at edge_runtime/interpreter.py)",
             f"- wheel: `{report['wheel']['name']}` ({report['wheel']['size']} B), installed with "
             f"`pip install '...whl[edge,mqtt,serve]'` from PyPI on x86 (the reference; install "
             f"{_secs(report['x86'].get('install_s'))}{', ' + report['x86']['reused'] if report['x86'].get('reused') else ''}) "
             "and in each image (versions held to the x86 install's)",
             "- emulation: Debian trees from debootstrap run through qemu-user (binfmt); install, import and RSS "
             "figures are emulated (RSS includes qemu's own), shown to compare images, not as Pi figures",
             f"- elapsed: {report.get('elapsed_s')} s", "", "## Per image", ""]
    lines += _table(head, image_rows(report))
    lines += ["", "## Records whose events differ", ""] + _differences(report)
    lines += ["", "## Install, gateway, deploy, service", ""] + _checks(report)
    lines += _kernels(report) + _armhf(report) + _armhf_tree(report) + _latency(report)
    return "\n".join(lines) + "\n"
