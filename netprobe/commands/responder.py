"""`netprobe responder`: the agent every host runs."""

from __future__ import annotations

import click

from netprobe.core.inventory import DEFAULT_AGENT_PORT


@click.command()
@click.option("--listen", default=f"tcp://0.0.0.0:{DEFAULT_AGENT_PORT}", show_default=True,
              help="Control API address: tcp://ADDR:PORT or unix:/PATH (the socket is made 0600).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Cluster token, at least 16 bytes (or NETPROBE_TOKEN). Required: keys for probes and for signing control requests are derived from it; it is never sent.")
@click.option("--name", default=None, help="Host name reported to the mesh (default: the hostname).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None, help="Serve HTTPS with this certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None, help="The certificate's key.")
@click.option("--allow", "allow", multiple=True, metavar="CIDR",
              help="Probe only targets in these IPv4 or IPv6 networks (repeatable; e.g. the cluster's node networks). "
                   "Default: any target, within the per-minute caps.")
def responder(listen, token_file, name, tls_cert, tls_key, allow):
    """Run the agent: taps and raw sockets that see every probe arrive, be accepted and be
    answered; echoes for authenticated UDP/IPIP/VXLAN probes; the control API that
    `netprobe mesh` drives. Needs root or CAP_NET_RAW+CAP_NET_ADMIN. SIGTERM stops it cleanly.

    \b
    Example:  netprobe responder --listen tcp://192.0.2.11:7879 --token-file /etc/netprobe/token
    """
    import signal
    import sys

    import trio

    from netprobe.agent.responder import serve_responder
    from netprobe.agent.server import check_listen_policy, parse_allow, plain_tcp_warning
    from netprobe.config import read_token

    token = read_token(token_file, required=True)
    where = check_listen_policy(listen, token)
    networks = parse_allow(allow)
    warning = plain_tcp_warning(where)
    if warning:
        print(f"netprobe responder: WARNING: {warning}", file=sys.stderr, flush=True)

    async def main():
        # the signal receiver first: a SIGTERM right after "ready" must stop us cleanly too
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(lambda task_status: serve_responder(
                    token, listen, name=name, tls_cert=tls_cert, tls_key=tls_key, allow=networks,
                    task_status=task_status))
                print(f"netprobe responder ready on {url}", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0
