"""Small helpers the commands share: option parsing that ends in one clear line on bad input."""

from __future__ import annotations

import os

from netprobe.errors import ConfigError


def parse_checks(profile: str, checks: str | None, *, apiserver_port: int = 6443, custom=()):
    from netprobe.core.checks import UnknownCheck, select_checks

    names = [c.strip() for c in checks.split(",") if c.strip()] if checks else None
    try:
        return select_checks(profile, names, apiserver_port=apiserver_port, custom=custom)
    except UnknownCheck as exc:
        raise ConfigError(str(exc), field="--checks" if names else "--profile") from None


def read_token(token_file: str | None, *, required: bool, env: str = "NETPROBE_TOKEN") -> str | None:
    """The cluster token from a file (first line) or the environment."""
    if token_file:
        try:
            with open(token_file) as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token: {exc.strerror}", file=token_file) from None
        if not token:
            raise ConfigError("token file is empty", file=token_file)
        return token
    token = os.environ.get(env, "").strip() or None
    if required and not token:
        raise ConfigError(f"a token is required: --token-file FILE or {env}")
    return token
