"""Reading what the user hands us (inventory, token, result files, --checks) and writing result
files: one place, each failure one ``ConfigError`` naming the file and field (exit 2)."""

from __future__ import annotations

import os

from netprobe.core.inventory import Inventory, parse_inventory
from netprobe.core.untrusted import MAX_TEXT, decode_text
from netprobe.errors import ConfigError


MAX_RESULT = 2 << 30  # a result file: the v1 form of a 1,000-host mesh is ~1 GB


def read_text(path: str, *, limit: int = MAX_TEXT) -> str:
    """A file's UTF-8 text; a directory, a missing file, a file over ``limit`` bytes or one that
    is not UTF-8 is one ConfigError naming it (checked before reading all of it)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limit:
                raise ConfigError(f"is {size:,} bytes; at most {limit:,} are read", file=path)
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    return decode_text(data, source=path, limit=limit)


def write_file(path: str, text: str) -> None:
    """Write ``text``; a path ending in .gz is gzipped."""
    try:
        if path.endswith(".gz"):
            import gzip

            with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
                f.write(text)
            return
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", file=path) from None


def load_inventory(path: str) -> Inventory:
    return parse_inventory(read_text(path), source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_result(path: str):
    """A result file, v1 or v2, plain or gzipped (told by its first bytes, not its name)."""
    from netprobe.core.result import Result

    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    if not gzipped:
        return Result.from_json(read_text(path, limit=MAX_RESULT), source=path)
    import gzip
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_RESULT + 1)  # bounded: a small bomb stops here
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"is not a readable gzip file: {exc}", file=path) from None
    if len(data) > MAX_RESULT:
        raise ConfigError(f"unpacks to more than {MAX_RESULT:,} bytes", file=path)
    return Result.from_json(decode_text(data, source=path, limit=MAX_RESULT), source=path)


def read_token(token_file: str | None, *, required: bool, env: str = "NETPROBE_TOKEN") -> str | None:
    """The cluster token from a file (its whole content, stripped) or the environment; one
    shorter than 16 bytes is refused (it keys probes and signs control requests)."""
    from netprobe.core.keys import MIN_SECRET_BYTES

    if token_file:
        token = read_text(token_file).strip()
        if not token:
            raise ConfigError("token file is empty", file=token_file)
        if len(token.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"token is {len(token.encode())} bytes; at least {MIN_SECRET_BYTES} are needed "
                              "(e.g. head -c 32 /dev/urandom | base64)", file=token_file)
        return token
    token = os.environ.get(env, "").strip() or None
    if required and not token:
        raise ConfigError(f"a token is required: --token-file FILE or {env}")
    if token and len(token.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{env} is {len(token.encode())} bytes; at least {MIN_SECRET_BYTES} are needed")
    return token


def inventory_token(inventory: Inventory, override: str | None = None) -> str:
    """--token-file, else the inventory's token_file, else NETPROBE_TOKEN."""
    if override:
        return read_token(override, required=True)
    if inventory.token_file:
        return read_token(inventory.token_file, required=True)
    return read_token(None, required=True)


def parse_checks(profile: str, checks: str | None, *, apiserver_port: int = 6443, vxlan_port: int | None = None,
                 custom=()):
    """The checks a run probes: the profile's, or the comma-separated ``--checks`` list."""
    from netprobe.core.checks import UnknownCheck, select_checks

    names = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
    try:
        return select_checks(profile, names, apiserver_port=apiserver_port, vxlan_port=vxlan_port,
                             custom=custom)
    except UnknownCheck as exc:
        raise ConfigError(str(exc), field="--checks" if names else "--profile") from None
