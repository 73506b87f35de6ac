"""Serve the control API with hypercorn's trio worker on TCP (optionally TLS) or a unix socket.

Readiness is exact: hypercorn's ``serve`` calls ``task_status.started(binds)`` after its
sockets listen, and we pass ``started`` on only after the unix socket's mode is checked, so
``await nursery.start(serve_api, ...)`` returning means a client can connect.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
import ssl
import stat
from dataclasses import dataclass

import trio
from hypercorn.config import Config
from hypercorn.trio import run as hypercorn_trio_run
from hypercorn.trio import serve

from netprobe.errors import ConfigError

FIELD = "listen"
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
MAX_CONNECTIONS = 64  # a mesh holds one per coordinator; kubelet probes a few
READ_TIMEOUT = 10     # seconds
HEADER_TIMEOUT = 5    # seconds to send a request's headers (or to stay idle between requests)


class _CappedTCPServer(hypercorn_trio_run.TCPServer):
    """hypercorn's connection handler, closing a connection at once when the serve's
    ``config.netprobe_connections`` limiter is full (hypercorn has no connection cap of its own)."""

    async def run(self) -> None:
        limiter = getattr(self.config, "netprobe_connections", None)
        if limiter is None:
            await super().run()
            return
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            logging.getLogger("netprobe.agent.http").warning(
                "over %d connections: one closed unserved", limiter.total_tokens)
            await self.stream.aclose()
            return
        try:
            await super().run()
        finally:
            limiter.release()


# installed once: hypercorn's trio worker looks the class up in its module when it serves
hypercorn_trio_run.TCPServer = _CappedTCPServer


@dataclass(frozen=True)
class Listen:
    """Where to listen: ``kind`` is "unix" (``path``) or "tcp"/"https" (``host``, ``port``)."""

    kind: str
    path: str | None = None
    host: str | None = None
    port: int | None = None

    @property
    def is_tcp(self) -> bool:
        return self.kind != "unix"


def parse_listen(listen: str) -> Listen:
    """``unix:/abs/path``, ``tcp://ADDR:PORT`` or ``https://ADDR:PORT`` (ADDR an IP, port 0 ok)."""
    if listen.startswith("unix:"):
        path = listen[5:]
        if not path.startswith("/"):
            raise ConfigError(f"unix socket path must be absolute, got {listen!r}", field=FIELD)
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise ConfigError(f"unix socket path longer than {UNIX_PATH_MAX} bytes: {path!r}", field=FIELD)
        return Listen("unix", path=path)
    m = re.fullmatch(r"(tcp|https)://(\[[0-9a-fA-F:.]+\]|[^:/\s\[\]]+):(\d{1,5})", listen)
    if not m or int(m.group(3)) > 65535:
        raise ConfigError(f"expected unix:/PATH or tcp://ADDR:PORT, got {listen!r}", field=FIELD)
    host = m.group(2).strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"listen on an IP address, not a name: {listen!r}", field=FIELD) from None
    return Listen(m.group(1), host=host, port=int(m.group(3)))


def parse_allow(cidrs) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``--allow`` networks: IPv4 or IPv6 CIDRs (host bits set are an error: a typo must not widen it)."""
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ConfigError(f"not an IPv4 or IPv6 network: {exc}", field="--allow") from None
    return tuple(out)


def plain_tcp_warning(where: Listen) -> str | None:
    """What to say when the control API is plain TCP off loopback (the responder prints it)."""
    if where.kind != "tcp" or ipaddress.ip_address(where.host).is_loopback:
        return None
    return (f"plain tcp://{where.host}:{where.port}: requests and replies are signed (the token never crosses "
            "the wire, nobody without it can drive or impersonate this agent), but the replies -- this host's "
            "view of the cluster -- are readable by anyone on the path. Serve https://ADDR:PORT with "
            "--tls-cert/--tls-key to encrypt them, or --allow CIDR to confine what a token holder can probe.")


def check_listen_policy(listen: str, token: str | None) -> Listen:
    """Refuse a TCP listener without a bearer token: anyone on the network could drive probes."""
    where = parse_listen(listen)
    if where.is_tcp and not token:
        raise ConfigError(f"listening on {listen} needs a token (--token-file or NETPROBE_TOKEN)", field=FIELD)
    return where


def _prepare_unix_path(path: str) -> None:
    """Remove a stale socket file; refuse a live socket or a file that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket", field=FIELD)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"cannot check socket {path}: {exc.strerror}", field=FIELD) from None
        os.unlink(path)  # nobody listens: stale
    else:
        raise ConfigError(f"{path} is in use by a running server", field=FIELD)
    finally:
        probe.close()


def _check_tls(where: Listen, tls_cert: str | None, tls_key: str | None) -> None:
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both a certificate and a key", field="tls")
    if tls_cert is None:
        if where.kind == "https":
            raise ConfigError("https:// needs a TLS certificate and key", field=FIELD)
        return
    if not where.is_tcp:
        raise ConfigError("TLS is for TCP listeners; a unix socket is protected by its file mode", field="tls")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate/key: {exc}", field="tls") from None


def _to_agent_url(bind: str) -> str:
    """hypercorn's ``http://unix:/p`` / ``http://1.2.3.4:5`` -> ``unix:/p`` / ``tcp://1.2.3.4:5``."""
    scheme, _, rest = bind.partition("://")
    if rest.startswith("unix:"):
        return rest
    return f"{'https' if scheme == 'https' else 'tcp'}://{rest}"


def _bind_error(group: BaseExceptionGroup) -> OSError | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _bind_error(exc)
            if found is not None:
                return found
        elif isinstance(exc, OSError):
            return exc
    return None


async def serve_api(
    app,
    listen: str,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    access_log: bool = False,
    max_connections: int = MAX_CONNECTIONS,
    header_timeout: float = HEADER_TIMEOUT,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``listen`` until cancelled; ``started(actual_address)`` once listening.

    The address passed to ``started`` is one ``AgentClient`` accepts (the real port for port
    0). TCP is refused unless the app was built with a token. A unix socket is created 0600
    and removed on exit. At most ``max_connections`` connections are served at once; one more is
    closed as soon as it is accepted. A client has ``header_timeout`` seconds for a request's
    headers (the app then allows 10 s for its body): a trickle cannot hold a connection.
    """
    where = parse_listen(listen)
    if where.is_tcp and not getattr(app.state, "auth_required", False):
        raise ConfigError(f"listening on {listen} needs a token (--token-file or NETPROBE_TOKEN)", field=FIELD)
    _check_tls(where, tls_cert, tls_key)

    config = Config()
    config.errorlog = logging.getLogger("netprobe.agent.http")
    config.accesslog = logging.getLogger("netprobe.agent.access") if access_log else None
    config.include_server_header = False
    config.graceful_timeout = 1.0
    config.alpn_protocols = ["http/1.1"]  # one request at a time per connection: no h2 streams
    config.read_timeout = READ_TIMEOUT    # a connection silent mid-request this long is closed
    # hypercorn's idle timer runs from the connection's start (and after each reply) until a
    # request's headers are complete: it is also the deadline for sending the headers
    config.keep_alive_timeout = header_timeout
    config.h11_max_incomplete_size = 16 * 1024
    config.netprobe_connections = trio.CapacityLimiter(max_connections)
    if tls_cert is not None:
        config.certfile, config.keyfile = tls_cert, tls_key
    if where.kind == "unix":
        assert where.path is not None
        _prepare_unix_path(where.path)
        config.bind = [f"unix:{where.path}"]
        config.umask = 0o177  # the socket file is born 0600: no window where others may connect
    else:
        host = f"[{where.host}]" if ":" in (where.host or "") else where.host
        config.bind = [f"{host}:{where.port}"]

    created_ino: int | None = None
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(serve, app, config)
            except (OSError, BaseExceptionGroup) as exc:
                failure = exc if isinstance(exc, OSError) else _bind_error(exc)
                if failure is None:
                    raise
            else:
                if where.kind == "unix":
                    assert where.path is not None
                    os.chmod(where.path, 0o600)
                    created_ino = os.lstat(where.path).st_ino
                task_status.started(_to_agent_url(binds[0]))
        # raised here, outside the nursery, so callers see a plain ConfigError, not a group
        if isinstance(failure, OSError):
            raise ConfigError(f"cannot listen on {listen}: {failure.strerror or failure}", field=FIELD)
    finally:
        if created_ino is not None and where.path is not None:
            try:
                if os.lstat(where.path).st_ino == created_ino:
                    os.unlink(where.path)
            except FileNotFoundError:
                pass
