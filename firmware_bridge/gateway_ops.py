"""Release directory operations on a gateway: install, switch, roll back.

Standard library only, and self-contained on purpose: :mod:`.deploy` imports
it for local targets and, for ``HOST:PATH`` targets, sends *this file's
source* to ``python3 -`` over ssh, so the gateway runs exactly the same code
without needing selfmis installed (or the same version of it).

Layout under a gateway root (e.g. ``/opt/selfmis``)::

    releases/<version>/      one unpacked, verified release archive each
    current  -> releases/<version>     what systemd runs (ExecStart uses current/)
    previous -> releases/<version>     what ``rollback`` switches back to
    incoming/                uploaded archives

The ``current`` link is switched atomically: a new symlink is created under
a temporary name and renamed over the old one (rename(2) is atomic on
POSIX), so a service starting at any moment sees either the old or the new
release, never a missing or half-written one. Only releases signed by a key in
ROOT/allowed_signers activate; without it, only a push with ``--allow-unsigned``.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zlib

MANIFEST = "MANIFEST.json"
RELEASE_FORMAT = "selfmis-release"
RELEASE_FORMAT_VERSION = 1
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


#: Exit codes: the values of ``selfmis.exit_codes.ExitCode`` (this file is stdlib only, it runs on
#: gateways without selfmis; tests pin them to the enum). REFUSED is ExitCode.MODEL: the release.
USAGE, REFUSED, SOURCE, TARGET = 2, 3, 4, 7


class DeployError(Exception):
    """A release archive or gateway directory that cannot be used; says why. ``exit_code``:
    REFUSED (the release), TARGET (the gateway: unreachable, busy, not writable), USAGE, SOURCE."""

    def __init__(self, message, exit_code=REFUSED):
        Exception.__init__(self, message)
        self.exit_code = exit_code


def check_version(version, exit_code=USAGE):
    if not isinstance(version, str) or not VERSION_RE.match(version) or version in (".", ".."):
        raise DeployError("version %r: use letters, digits and . _ + - (e.g. 1.2.0), "
                          "at most 64 characters" % (version,), exit_code)
    return version


#: Caps checked while the archive streams, before anything is unpacked: a 1 MB gzip of 1 GB
#: (or of a million members) is refused after reading at most these many bytes.
MAX_ARCHIVE_BYTES = 512 << 20      # the .tar.gz as stored
MAX_MEMBERS = 16
MAX_MEMBER_BYTES = 256 << 20
MAX_TOTAL_BYTES = 512 << 20        # everything the gzip stream expands to (tar headers included)
MAX_MANIFEST_BYTES = 1 << 20
SIGNATURE = "MANIFEST.json.sig"
SIG_NAMESPACE = "selfmis-release"
ALLOWED_SIGNERS = "allowed_signers"


class _Capped(object):
    """A read-only stream that refuses to deliver more than ``cap`` bytes (the expanded tar)."""

    def __init__(self, raw, cap, path):
        self.raw, self.left, self.path = raw, cap, path

    def read(self, n=-1):
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        data = self.raw.read(want)
        self.left -= len(data)
        if self.left < 0:
            raise DeployError("%s: expands to more than %d MiB; refused before unpacking"
                              % (self.path, MAX_TOTAL_BYTES >> 20))
        return data


def read_archive(path, dest):
    """Stream and verify a release archive into directory ``dest``; return (manifest, {name: path}).

    Checked member by member as the gzip streams (never the whole archive in memory): the caps
    above, plain regular files only (no links, absolute paths or ``..``), no name twice; then a
    MANIFEST.json listing every file's size and sha256. A MANIFEST.json.sig is kept for
    :func:`verify_signature`."""
    import gzip
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DeployError("%s: cannot read (%s)" % (path, e.strerror), SOURCE)
    if size > MAX_ARCHIVE_BYTES:
        raise DeployError("%s: %d bytes; a release archive is at most %d MiB"
                          % (path, size, MAX_ARCHIVE_BYTES >> 20))
    files, hashes, total = {}, {}, 0
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
                tarfile.open(fileobj=_Capped(gz, MAX_TOTAL_BYTES, path), mode="r|") as tar:
            for m in tar:
                if len(files) >= MAX_MEMBERS:
                    raise DeployError("%s: more than %d members" % (path, MAX_MEMBERS))
                if not m.isfile():
                    raise DeployError("%s: member %r is not a regular file" % (path, m.name))
                if not _NAME_RE.match(m.name):
                    raise DeployError("%s: member name %r is not a plain file name" % (path, m.name))
                if m.name in files:
                    raise DeployError("%s: member %r appears twice" % (path, m.name))
                cap = MAX_MANIFEST_BYTES if m.name in (MANIFEST, SIGNATURE) else MAX_MEMBER_BYTES
                total += m.size
                if m.size > cap or total > MAX_TOTAL_BYTES:
                    raise DeployError("%s: member %r of %d bytes is over the cap (%d MiB)"
                                      % (path, m.name, m.size, cap >> 20))
                target = os.path.join(dest, m.name)
                h = hashlib.sha256()
                src = tar.extractfile(m)
                with open(target, "wb") as out:
                    for block in iter(lambda: src.read(1 << 16), b""):
                        h.update(block)
                        out.write(block)
                files[m.name], hashes[m.name] = target, (h.hexdigest(), m.size)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DeployError("%s: not a readable .tar.gz (%s)" % (path, e))
    if MANIFEST not in files:
        raise DeployError("%s: no %s in the archive" % (path, MANIFEST))
    try:
        with open(files.pop(MANIFEST), "rb") as fh:  # stays on disk in dest: the signed bytes
            manifest = json.loads(fh.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise DeployError("%s: %s is not valid JSON (%s)" % (path, MANIFEST, e))
    hashes.pop(MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != RELEASE_FORMAT:
        raise DeployError("%s: not a SelfMIS release" % path)
    fv = manifest.get("format_version", 0)
    if not isinstance(fv, int) or fv > RELEASE_FORMAT_VERSION:
        raise DeployError("%s: release format_version %r is not one this tool understands" % (path, fv))
    check_version(manifest.get("version"), REFUSED)
    listed = manifest.get("files") or {}
    if not isinstance(listed, dict) or not all(isinstance(v, dict) for v in listed.values()):
        raise DeployError("%s: the manifest's files are not {name: {sha256, size}}" % path)
    payload = set(files) - {SIGNATURE}
    missing = sorted(set(listed) - payload)
    extra = sorted(payload - set(listed))
    if missing:
        raise DeployError("%s: files listed in the manifest are missing: %s" % (path, missing))
    if extra:
        raise DeployError("%s: files not listed in the manifest: %s" % (path, extra))
    for name in sorted(payload):
        digest, n = hashes[name]
        want = listed[name]
        if n != want.get("size") or digest != want.get("sha256"):
            raise DeployError("%s: %s does not match its manifest entry (size %d, sha256 %s...)"
                              % (path, name, n, digest[:12]))
    return manifest, files


def _ssh_keygen(args, data=None):
    try:
        return subprocess.run(["ssh-keygen"] + list(args), input=data, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DeployError("ssh-keygen (OpenSSH) is needed to check release signatures: %s" % e, TARGET)


def verify_signature(manifest_bytes, sig_path, allowed_signers):
    """The principal whose key in ``allowed_signers`` signed ``manifest_bytes`` (namespace
    ``selfmis-release``), or DeployError. ``ssh-keygen -Y find-principals`` then ``-Y verify``."""
    if sig_path is None:
        raise DeployError("the release is not signed (no %s) and this gateway requires signed "
                          "releases (%s): sign it with `selfmis deploy bundle --sign-key KEY`"
                          % (SIGNATURE, allowed_signers))
    p = _ssh_keygen(["-Y", "find-principals", "-s", sig_path, "-f", allowed_signers])
    principals = p.stdout.decode("utf-8", "replace").split()
    if p.returncode != 0 or not principals:
        raise DeployError("the release's signature is by no key in %s (or is malformed)" % allowed_signers)
    v = _ssh_keygen(["-Y", "verify", "-f", allowed_signers, "-I", principals[0], "-n", SIG_NAMESPACE,
                     "-s", sig_path], data=manifest_bytes)
    if v.returncode != 0:
        err = v.stderr.decode("utf-8", "replace").strip()[:200]
        raise DeployError("the release's signature does not verify against %s (%s): the manifest "
                          "was changed after signing" % (allowed_signers, err))
    return principals[0]


def trust(root, public_key, principal="release"):
    """Write ROOT/allowed_signers from ``public_key`` (the text of an ed25519 .pub): from then on
    every release installed under ROOT must be signed by that key."""
    root = os.path.abspath(os.path.expanduser(root))
    fields = public_key.strip().split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-ed25519", "sk-ssh-ed25519")):
        raise DeployError("expected an ed25519 public key (ssh-ed25519 AAAA...), got %r"
                          % public_key[:40], USAGE)
    if not re.match(r"^[A-Za-z0-9._@-]{1,64}$", principal):
        raise DeployError("principal %r: letters, digits and . _ @ - only" % principal, USAGE)
    with _explain_permissions(root):
        os.makedirs(root, exist_ok=True)
        tmp = os.path.join(root, ALLOWED_SIGNERS + ".tmp")
        with open(tmp, "w") as fh:
            fh.write('%s namespaces="%s" %s %s\n' % (principal, SIG_NAMESPACE, fields[0], fields[1]))
        os.replace(tmp, os.path.join(root, ALLOWED_SIGNERS))
    return {"root": root, "allowed_signers": os.path.join(root, ALLOWED_SIGNERS), "principal": principal}


def _link_target(link):
    try:
        return os.readlink(link)
    except OSError:
        return None


def _atomic_symlink(target, link):
    tmp = "%s.tmp-%d-%d" % (link, os.getpid(), int(time.time() * 1e6))
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        os.unlink(tmp)
        raise


def _fsync_dir(path):
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _release_dir_matches(directory, manifest):
    try:
        with open(os.path.join(directory, MANIFEST), "rb") as fh:
            return json.loads(fh.read().decode("utf-8")).get("files") == manifest.get("files")
    except (OSError, ValueError):
        return False


def _user_name(uid):
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "uid %d" % uid  # not POSIX, or a uid without a passwd entry


def _permission_error(root, exc):
    """A DeployError saying which folder to hand to which user (for a PermissionError under root);
    the usual cause: a root created by ``sudo`` (with the venv), not writable by the deploy user."""
    me = _user_name(os.geteuid()) if hasattr(os, "geteuid") else "this user"
    path = exc.filename or root
    where = path
    while where and not os.path.isdir(where) and os.path.dirname(where) != where:
        where = os.path.dirname(where)  # the nearest existing folder: the one not writable
    try:
        owner = _user_name(os.stat(where).st_uid)
    except OSError:
        owner = "another user"
    if os.path.isdir(root):
        fix = "sudo chown -R %s: %s" % (me, root)
    else:  # the root itself is missing and its parent is not ours: create it for us
        fix = "sudo install -d -o %s -g $(id -gn %s) %s" % (me, me, root)
    return DeployError("%s: permission denied (%s is owned by %s, and this deploy runs as %s). "
                       "Give the gateway root to the deploy user: `%s` on the gateway "
                       "(or push as %s)" % (path, where, owner, me, fix, owner), TARGET)


@contextlib.contextmanager
def _explain_permissions(root):
    try:
        yield
    except PermissionError as exc:
        raise _permission_error(root, exc) from None


@contextlib.contextmanager
def _locked(root):
    """One deploy operation at a time per gateway root (flock on ROOT/.lock)."""
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking, still correct for a single user
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise DeployError("%s: another deploy is running (lock %s/.lock)" % (root, root), TARGET)
        yield
    finally:
        os.close(fd)


def switch(root, version):
    """Point ``current`` at releases/<version>; the old target becomes ``previous``."""
    root = os.path.abspath(os.path.expanduser(root))
    check_version(version)
    rel = os.path.join("releases", version)
    if not os.path.isdir(os.path.join(root, rel)):
        raise DeployError("%s: no release %r" % (root, version), TARGET)
    current = os.path.join(root, "current")
    old = _link_target(current)
    if old is not None and old != rel:
        _atomic_symlink(old, os.path.join(root, "previous"))
    _atomic_symlink(rel, current)
    _fsync_dir(root)
    return {"root": root, "current": version, "previous": _version_of(old) if old != rel else
            _version_of(_link_target(os.path.join(root, "previous")))}


def _version_of(target):
    return os.path.basename(target.rstrip("/")) if target else None


def install(root, archive, activate=True, force=False, post_cmd=None, keep=None, allow_unsigned=False):
    """Verify ``archive`` (hashes, then its signature: :func:`check_signed`), unpack it to
    releases/<version>/, then switch to it. Re-installing an identical release is a no-op (plus
    the switch); a different release under an existing version is refused unless ``force``.
    ``keep``: afterwards delete all but the ``keep`` newest releases (never current/previous)."""
    root = os.path.abspath(os.path.expanduser(root))
    with _explain_permissions(root), _locked(root):
        result = _install(root, archive, activate, force, post_cmd, allow_unsigned)
        if keep is not None:
            result["pruned"] = prune(root, keep)
    return result


def _install(root, archive, activate, force, post_cmd, allow_unsigned):
    releases = os.path.join(root, "releases")
    os.makedirs(releases, exist_ok=True)
    # stream into a temporary directory beside the final name: nothing is unpacked anywhere
    # else, and no half-unpacked or unverified release is ever visible under releases/<version>
    tmp = os.path.join(releases, ".incoming.tmp-%d" % os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        return _install_from(root, releases, tmp, archive, activate, force, post_cmd, allow_unsigned)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_signed(root, manifest_path, sig_path, allow_unsigned=False):
    """Who signed the release (a principal of ROOT/allowed_signers), or DeployError (REFUSED).
    With allowed_signers (``selfmis deploy trust``) only its keys' releases, whatever the push
    says; without, nothing can be verified: refused unless ``allow_unsigned`` (then None)."""
    signers = os.path.join(root, ALLOWED_SIGNERS)
    if os.path.exists(signers):
        with open(manifest_path, "rb") as fh:
            return verify_signature(fh.read(), sig_path, signers)
    if allow_unsigned:
        return None
    raise DeployError("%s: no %s on this gateway, so no release can be verified; refused. Set the "
                      "release key once: `selfmis deploy trust %s --pubkey KEY.pub` (and sign with "
                      "`selfmis deploy bundle --sign-key KEY`), or push with --allow-unsigned to "
                      "install without verification" % (root, ALLOWED_SIGNERS, root))


def _install_from(root, releases, tmp, archive, activate, force, post_cmd, allow_unsigned):
    manifest, files = read_archive(archive, tmp)
    signer = check_signed(root, os.path.join(tmp, MANIFEST), files.get(SIGNATURE), allow_unsigned)
    version = manifest["version"]
    final = os.path.join(releases, version)
    if os.path.exists(final) and not _release_dir_matches(final, manifest):
        if not force:
            raise DeployError("%s: release %s already exists with different files; "
                              "bump the version (or force)" % (root, version), TARGET)
        if os.path.realpath(final) == os.path.realpath(os.path.join(root, "current")):
            raise DeployError("%s: refusing to replace the running release %s" % (root, version), TARGET)
        shutil.rmtree(final)
    if not os.path.exists(final):
        for name in list(files) + [MANIFEST]:
            with open(os.path.join(tmp, name), "rb+") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
        os.makedirs(tmp)  # the caller's cleanup finds an empty directory
        _fsync_dir(releases)
    result = {"root": root, "version": version, "path": final, "activated": False,
              "signed_by": signer, "verified": signer is not None}
    if activate:
        result.update(switch(root, version))
        result["activated"] = True
    if post_cmd:
        result["post_cmd"] = _run_post(post_cmd)
    return result


def _run_post(cmd):
    p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.decode("utf-8", "replace")[-2000:]
    if p.returncode != 0:
        raise DeployError("post command %r failed with exit code %d: %s" % (cmd, p.returncode, out), TARGET)
    return {"cmd": cmd, "rc": p.returncode, "output": out}


def rollback(root, post_cmd=None):
    """Switch ``current`` back to ``previous`` (and ``previous`` to the old current)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DeployError("%s: no such gateway directory" % root, TARGET)
    with _explain_permissions(root), _locked(root):
        return _rollback(root, post_cmd)


def _rollback(root, post_cmd):
    prev = _link_target(os.path.join(root, "previous"))
    if prev is None:
        raise DeployError("%s: nothing to roll back to (no 'previous' release)" % root, TARGET)
    version = _version_of(prev)
    if not os.path.isdir(os.path.join(root, "releases", version)):
        raise DeployError("%s: previous release %s has been removed" % (root, version), TARGET)
    result = switch(root, version)
    if post_cmd:
        result["post_cmd"] = _run_post(post_cmd)
    return result


def prune(root, keep):
    """Delete old releases beyond the ``keep`` newest; ``current``/``previous`` always stay."""
    root = os.path.abspath(os.path.expanduser(root))
    rel = os.path.join(root, "releases")
    protected = {_version_of(_link_target(os.path.join(root, n))) for n in ("current", "previous")}
    versions = [d for d in os.listdir(rel) if not d.startswith(".")] if os.path.isdir(rel) else []
    versions.sort(key=lambda d: os.path.getmtime(os.path.join(rel, d)), reverse=True)
    removed = []
    for v in versions[max(int(keep), 0):]:
        if v not in protected:
            shutil.rmtree(os.path.join(rel, v))
            removed.append(v)
    return removed


def status(root):
    root = os.path.abspath(os.path.expanduser(root))
    rel = os.path.join(root, "releases")
    versions = sorted(d for d in os.listdir(rel) if not d.startswith(".")) if os.path.isdir(rel) else []
    return {"root": root, "current": _version_of(_link_target(os.path.join(root, "current"))),
            "previous": _version_of(_link_target(os.path.join(root, "previous"))),
            "releases": versions, "signatures_required": os.path.exists(os.path.join(root, ALLOWED_SIGNERS))}


def prepare(root):
    """Create the root and its incoming/ directory; return its absolute path."""
    root = os.path.abspath(os.path.expanduser(root))
    incoming = os.path.join(root, "incoming")
    with _explain_permissions(root):
        os.makedirs(incoming, exist_ok=True)
    return {"root": root, "incoming": incoming}


def _main(argv):
    """``python3 - OP ROOT [ARGS]`` on the gateway; prints one JSON object.

    Exit 0 on success, else the DeployError's code (message and code in the JSON "error", "code").
    """
    op, root, rest = argv[0], argv[1], argv[2:]
    try:
        if op == "prepare":
            out = prepare(root)
        elif op == "install":
            archive, post = rest[0], (rest[1] if len(rest) > 1 and rest[1] else None)
            keep = int(rest[2]) if len(rest) > 2 and rest[2] else None
            unsigned = len(rest) > 3 and rest[3] == "allow-unsigned"
            try:
                out = install(root, archive, post_cmd=post, keep=keep, allow_unsigned=unsigned)
            finally:  # the uploaded copy: the release dir holds the files (or it was refused)
                try:
                    os.unlink(archive)
                except OSError:  # gone, or not ours: never mask the install's own error
                    pass
        elif op == "rollback":
            out = rollback(root, post_cmd=rest[0] if rest and rest[0] else None)
        elif op == "status":
            out = status(root)
        elif op == "trust":
            out = trust(root, rest[0], rest[1] if len(rest) > 1 and rest[1] else "release")
        else:
            raise DeployError("unknown operation %r" % op, USAGE)
    except (DeployError, OSError) as e:
        code = getattr(e, "exit_code", TARGET)
        sys.stdout.write(json.dumps({"error": str(e), "code": code}) + "\n")
        return code
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
