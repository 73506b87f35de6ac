"""One exception tree, so the CLI maps every failure to one clear line and an exit code.

Core parsers raise only ``BadPacket`` (like h11's RemoteProtocolError: the peer sent garbage);
everything else is a ``NetprobeError`` carrying the exit code the CLI should use.
"""

from __future__ import annotations


class NetprobeError(Exception):
    """Base of every error netprobe reports to a user."""

    exit_code = 3


class ConfigError(NetprobeError):
    """Bad input: a file, a field, an option. Names the file and field when it can."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        # a field path is built from the input's own keys: a hostile key ("\n", an escape
        # sequence) is shown escaped, so the error stays one harmless line
        if field is not None and not field.isprintable():
            field = field.encode("unicode_escape").decode("ascii")
        self.field = field
        where = ": ".join(part for part in (file, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class PrivilegeError(NetprobeError):
    """This needs root or CAP_NET_RAW/CAP_NET_ADMIN."""

    exit_code = 2


class AgentError(NetprobeError):
    """A responder could not be reached or failed a request."""

    exit_code = 3


class LabError(NetprobeError):
    """The lab could not be built or torn down."""

    exit_code = 3


class BadPacket(Exception):
    """A packet that is malformed or not ours. The only exception core parsers raise."""
