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
release, never a missing or half-written one.
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

MANIFEST = "MANIFEST.json"
RELEASE_FORMAT = "selfmis-release"
RELEASE_FORMAT_VERSION = 1
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class DeployError(Exception):
    """A release archive or gateway directory that cannot be used; says why."""


def check_version(version):
    if not isinstance(version, str) or not VERSION_RE.match(version) or version in (".", ".."):
        raise DeployError("version %r: use letters, digits and . _ + - (e.g. 1.2.0), "
                          "at most 64 characters" % (version,))
    return version


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def read_archive(path):
    """Read and verify a release archive; return (manifest, {name: bytes}).

    Checks: only regular files with plain names (no directories, links,
    absolute paths or ``..``), a MANIFEST.json listing every file with its
    size and sha256, nothing unlisted, nothing missing.
    """
    files = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar.getmembers():
                if not m.isfile():
                    raise DeployError("%s: member %r is not a regular file" % (path, m.name))
                if not _NAME_RE.match(m.name):
                    raise DeployError("%s: member name %r is not a plain file name" % (path, m.name))
                if m.name in files:
                    raise DeployError("%s: member %r appears twice" % (path, m.name))
                files[m.name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DeployError("%s: not a readable .tar.gz (%s)" % (path, e))
    if MANIFEST not in files:
        raise DeployError("%s: no %s in the archive" % (path, MANIFEST))
    try:
        manifest = json.loads(files.pop(MANIFEST).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DeployError("%s: %s is not valid JSON (%s)" % (path, MANIFEST, e))
    if manifest.get("format") != RELEASE_FORMAT:
        raise DeployError("%s: not a SelfMIS release (format=%r)" % (path, manifest.get("format")))
    if int(manifest.get("format_version", 0)) > RELEASE_FORMAT_VERSION:
        raise DeployError("%s: release format_version %s is newer than this tool understands"
                          % (path, manifest.get("format_version")))
    check_version(manifest.get("version"))
    listed = manifest.get("files") or {}
    missing = sorted(set(listed) - set(files))
    extra = sorted(set(files) - set(listed))
    if missing:
        raise DeployError("%s: files listed in the manifest are missing: %s" % (path, missing))
    if extra:
        raise DeployError("%s: files not listed in the manifest: %s" % (path, extra))
    for name, data in sorted(files.items()):
        want = listed[name]
        if len(data) != want.get("size") or sha256_bytes(data) != want.get("sha256"):
            raise DeployError("%s: %s does not match its manifest entry (size %d, sha256 %s...)"
                              % (path, name, len(data), sha256_bytes(data)[:12]))
    return manifest, files


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
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
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
    except (ImportError, KeyError):  # not POSIX, or a uid without a passwd entry
        return "uid %d" % uid


def _permission_error(root, exc):
    """A DeployError saying which folder to hand to which user (for a PermissionError under root).

    The usual cause: the gateway root was created by ``sudo`` (e.g. while
    making the venv), so the deploy user may not write ``.lock``,
    ``releases/`` or the ``current`` link in it.
    """
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
                       "(or push as %s)" % (path, where, owner, me, fix, owner))


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
                raise DeployError("%s: another deploy is running (lock %s/.lock)" % (root, root))
        yield
    finally:
        os.close(fd)


def switch(root, version):
    """Point ``current`` at releases/<version>; the old target becomes ``previous``."""
    root = os.path.abspath(os.path.expanduser(root))
    check_version(version)
    rel = os.path.join("releases", version)
    if not os.path.isdir(os.path.join(root, rel)):
        raise DeployError("%s: no release %r" % (root, version))
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


def install(root, archive, activate=True, force=False, post_cmd=None, keep=None):
    """Verify ``archive``, unpack it to releases/<version>/, then switch to it.

    Re-installing an identical release is a no-op (plus the switch); a
    different release under an existing version is refused unless ``force``.
    ``keep``: afterwards delete all but the ``keep`` newest releases (never
    ``current`` or ``previous``).
    """
    root = os.path.abspath(os.path.expanduser(root))
    with _explain_permissions(root), _locked(root):
        result = _install(root, archive, activate, force, post_cmd)
        if keep is not None:
            result["pruned"] = prune(root, keep)
    return result


def _install(root, archive, activate, force, post_cmd):
    manifest, files = read_archive(archive)
    version = manifest["version"]
    releases = os.path.join(root, "releases")
    os.makedirs(releases, exist_ok=True)
    final = os.path.join(releases, version)
    if os.path.exists(final) and not _release_dir_matches(final, manifest):
        if not force:
            raise DeployError("%s: release %s already exists with different files; "
                              "bump the version (or force)" % (root, version))
        if os.path.realpath(final) == os.path.realpath(os.path.join(root, "current")):
            raise DeployError("%s: refusing to replace the running release %s" % (root, version))
        shutil.rmtree(final)
    if not os.path.exists(final):
        # unpack beside the final name, then rename: no half-unpacked release is ever visible
        tmp = os.path.join(releases, ".%s.tmp-%d" % (version, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            for name, data in files.items():
                with open(os.path.join(tmp, name), "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            with open(os.path.join(tmp, MANIFEST), "wb") as fh:
                fh.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(releases)
    result = {"root": root, "version": version, "path": final, "activated": False}
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
        raise DeployError("post command %r failed with exit code %d: %s" % (cmd, p.returncode, out))
    return {"cmd": cmd, "rc": p.returncode, "output": out}


def rollback(root, post_cmd=None):
    """Switch ``current`` back to ``previous`` (and ``previous`` to the old current)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DeployError("%s: no such gateway directory" % root)
    with _explain_permissions(root), _locked(root):
        return _rollback(root, post_cmd)


def _rollback(root, post_cmd):
    prev = _link_target(os.path.join(root, "previous"))
    if prev is None:
        raise DeployError("%s: nothing to roll back to (no 'previous' release)" % root)
    version = _version_of(prev)
    if not os.path.isdir(os.path.join(root, "releases", version)):
        raise DeployError("%s: previous release %s has been removed" % (root, version))
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
            "releases": versions}


def prepare(root):
    """Create the root and its incoming/ directory; return its absolute path."""
    root = os.path.abspath(os.path.expanduser(root))
    incoming = os.path.join(root, "incoming")
    with _explain_permissions(root):
        os.makedirs(incoming, exist_ok=True)
    return {"root": root, "incoming": incoming}


def _main(argv):
    """``python3 - OP ROOT [ARGS]`` on the gateway; prints one JSON object.

    Exit 0 on success, 3 on a DeployError (message in the JSON "error").
    """
    op, root, rest = argv[0], argv[1], argv[2:]
    try:
        if op == "prepare":
            out = prepare(root)
        elif op == "install":
            archive, post = rest[0], (rest[1] if len(rest) > 1 and rest[1] else None)
            keep = int(rest[2]) if len(rest) > 2 and rest[2] else None
            try:
                out = install(root, archive, post_cmd=post, keep=keep)
            finally:  # the uploaded copy: the release dir holds the files (or it was refused)
                try:
                    os.unlink(archive)
                except OSError:  # gone, or not ours: never mask the install's own error
                    pass
        elif op == "rollback":
            out = rollback(root, post_cmd=rest[0] if rest and rest[0] else None)
        elif op == "status":
            out = status(root)
        else:
            raise DeployError("unknown operation %r" % op)
    except (DeployError, OSError) as e:
        sys.stdout.write(json.dumps({"error": str(e)}) + "\n")
        return 3
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
