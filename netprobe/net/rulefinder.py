"""The rule that dropped a flow, named on the host that dropped it (docs/design.md, "Naming the
rule"): the shell of ``core/trace.py`` and ``core/iptables_save.py``.

Armed, it holds a netlink socket joined to the nftables trace group and a table of its own,
``netprobe_trace_<hex>``, whose chains run first at prerouting and output (and at the ingress
hook of each device that has netdev ingress chains) and set ``meta nftrace`` for exactly the
given flows; when iptables-legacy tables exist, their counters are saved. The caller then sends
(or awaits) the probes and asks for ``results``. Nothing else is changed: existing rules are
only listed, and the table goes on every way out (a SIGKILL leaves it to ``sweep_leftovers``).
"""

from __future__ import annotations

import errno
import logging
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from netprobe.core.iptables_save import iptables_form, legacy_rules
from netprobe.core.trace import (
    TRACE_TABLE_PREFIX,
    Flow,
    NotNamed,
    RuleFound,
    TraceBook,
    TraceEvent,
    chain_rules,
    netdev_ingress_devices,
    netdev_trace_ruleset,
    nft_name,
    parse_trace_messages,
    rule_found,
    trace_ruleset,
    trace_tables,
)
from netprobe.net import sockets

log = logging.getLogger("netprobe.net.rulefinder")
LEGACY_POLL = 0.1     # seconds between two reads of the iptables-legacy counters
CLEANUP_TIMEOUT = 5.0  # for removing the table, shielded from cancellation
LEGACY_TABLES = {4: Path("/proc/thread-self/net/ip_tables_names"),  # this namespace's legacy tables
                 6: Path("/proc/thread-self/net/ip6_tables_names")}
LEGACY_SAVE = {4: "iptables-legacy-save", 6: "ip6tables-legacy-save"}
NFT_SAVE = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}


class RuleFinder:
    """``async with RuleFinder([(flow, "ingress"|"egress"), ...]) as finder:`` send the probes,
    then ``await finder.results(expected_packets=..., timeout=...)``. In this network namespace."""

    def __init__(self, flows: Sequence[tuple[Flow, str]], *, nft: str = "nft"):
        self.flows = list(dict.fromkeys(flows))
        if any(d not in ("ingress", "egress") for _, d in self.flows):
            raise ValueError("a flow's direction is 'ingress' or 'egress'")
        self.nft = nft
        self.table = TRACE_TABLE_PREFIX + secrets.token_hex(4)
        self._families: list[str] = []  # where our table is in place
        self._sock = None
        self._book = TraceBook(f for f, _ in self.flows)
        self._unavailable: str | None = None  # why nftables cannot name anything here
        self._lost = False
        self._legacy_before: dict[int, str] = {}  # IP version -> `iptables-legacy-save -c` before
        self._legacy_missing: str | None = None

    # ------------------------------------------------------------ arming

    async def __aenter__(self) -> RuleFinder:
        try:
            if self.flows:
                async with trio.open_nursery() as nursery:  # each step is a process: at once
                    nursery.start_soon(self._arm_nftables)
                    nursery.start_soon(self._save_legacy)
        except BaseException:
            await self._disarm()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._disarm()

    async def _arm_nftables(self) -> None:
        if shutil.which(self.nft) is None:
            self._unavailable = "nft not installed"
            return
        try:
            self._sock = sockets.open_trace_listener()  # before the table: no event is missed
        except OSError as exc:
            self._unavailable = f"no nftables trace support ({exc.strerror or exc})"
            return
        listed: list = []

        async def list_chains():
            listed.append(await self._run([self.nft, "list", "chains"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(list_chains)
            if not await self._add("inet", trace_ruleset(self.table, self.flows)):
                return
        netdev = netdev_trace_ruleset(self.table, self.flows, netdev_ingress_devices(listed[0][1]))
        if netdev is not None:  # apart: a device gone since the listing must not cost the inet table
            await self._add("netdev", netdev)

    async def _add(self, family: str, ruleset: str) -> bool:
        # counted as ours before nft runs: cancelled mid-way, it may have committed (nft -f is atomic)
        self._families.append(family)
        rc, _, err = await self._run([self.nft, "-f", "-"], ruleset)
        if rc == 0:
            return True
        self._families.remove(family)
        if family == "inet":
            self._unavailable = f"nftables refused the trace table: {_first_line(err)}"
        else:
            log.warning("netdev ingress chains will not be traced: %s", _first_line(err))
        return False

    async def _save_legacy(self) -> None:
        for version in sorted({f.version for f, _ in self.flows}):
            try:
                if not LEGACY_TABLES[version].read_text().split():
                    continue  # no legacy table in this namespace: nothing to count
            except OSError:
                continue
            save = shutil.which(LEGACY_SAVE[version])
            if save is None:
                self._legacy_missing = f"iptables-legacy tables exist but {LEGACY_SAVE[version]} is not installed"
                continue
            rc, out, _ = await self._run([save, "-c"])
            if rc == 0:
                self._legacy_before[version] = out

    async def _disarm(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
            while self._families:
                family = self._families.pop()
                rc, _, err = await self._run([self.nft, "delete", "table", family, self.table])
                if rc != 0 and "No such file" not in err:  # never made (cancelled before nft committed)
                    log.warning("could not remove trace table %s %s: %s", family, self.table, _first_line(err))
        if self._families:
            log.warning("trace table %s left in place (the next agent start sweeps it)", self.table)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ results

    async def results(self, *, expected_packets: Mapping[Flow, int],
                      timeout: float) -> dict[Flow, RuleFound | NotNamed]:
        """Per flow, the rule that dropped it or why none can be named. Waits until every flow is
        named (a drop traced, or iptables-legacy counters that agree twice in a row) or
        ``timeout`` seconds have passed."""
        deadline = trio.current_time() + timeout
        wanted = {f: (d, expected_packets.get(f, 0)) for f, d in self.flows}
        legacy: dict[Flow, RuleFound | str] = {}
        next_poll = trio.current_time()
        while True:
            self._drain()
            open_flows = {f: w for f, w in wanted.items() if f not in self._book.drops}
            if not open_flows or (self._sock is None and not self._legacy_before):
                break
            now = trio.current_time()
            if self._legacy_before and now >= min(next_poll, deadline):
                again = await self._legacy(open_flows)
                settled, legacy = again == legacy, again
                next_poll = trio.current_time() + LEGACY_POLL
                if settled and all(isinstance(legacy.get(f), RuleFound) for f in open_flows):
                    break
            if now >= deadline:
                break
            with trio.move_on_at(min(deadline, next_poll) if self._legacy_before else deadline):
                if self._sock is None:
                    await trio.sleep_forever()
                await trio.lowlevel.wait_readable(self._sock)
        found: dict[Flow, RuleFound | NotNamed] = {}
        listed: dict[tuple, tuple[int, str, str]] = {}  # each chain and table listed once
        for flow, direction in self.flows:
            drop = self._book.drops.get(flow)
            if drop is not None:
                found[flow] = await self._name(drop, listed)
            elif isinstance(legacy.get(flow), RuleFound):
                found[flow] = legacy[flow]
            else:
                found[flow] = NotNamed(self._why(flow, direction, timeout, legacy.get(flow)))
        return found

    def _drain(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._lost = True  # the kernel dropped messages: say so, keep reading
                continue
            for event in parse_trace_messages(data):
                self._book.add(event)

    async def _legacy(self, flows: Mapping[Flow, tuple[str, int]]) -> dict[Flow, RuleFound | str]:
        found: dict[Flow, RuleFound | str] = {}
        for version, before in self._legacy_before.items():
            mine = {f: w for f, w in flows.items() if f.version == version}
            if mine:
                rc, after, err = await self._run([shutil.which(LEGACY_SAVE[version]) or LEGACY_SAVE[version], "-c"])
                found |= legacy_rules(before, after, mine) if rc == 0 else \
                    dict.fromkeys(mine, f"{LEGACY_SAVE[version]} failed: {_first_line(err)}")
        return found

    async def _name(self, drop: TraceEvent, listed: dict) -> RuleFound | NotNamed:
        async def once(argv):
            if tuple(argv) not in listed:
                listed[tuple(argv)] = await self._run(argv)
            return listed[tuple(argv)]

        rules = None
        if drop.kind == "rule":
            rc, listing, _ = await once([self.nft, "-a", "list", "chain", drop.family, nft_name(drop.table),
                                         nft_name(drop.chain)])
            rules = chain_rules(listing) if rc == 0 else None
        ipt = None
        if drop.family in NFT_SAVE and drop.table in IPTABLES_TABLES and shutil.which(NFT_SAVE[drop.family]):
            rc, save, _ = await once([NFT_SAVE[drop.family], "-t", drop.table])
            if rc == 0:
                ipt = iptables_form(save, drop.table, drop.chain, drop.handle, rules or [])
        return rule_found(drop, rules, ipt)

    def _why(self, flow: Flow, direction: str, timeout: float, legacy: str | None) -> str:
        if self._unavailable is not None:
            reason = self._unavailable
        elif flow not in self._book.seen:
            reason = f"no trace for this flow within {timeout:g} s"
            if direction == "ingress":
                reason += " (it never reached nftables here: not arrived, or a tc drop, which is not traced)"
        else:
            last = self._book.last.get(flow)
            reason = "nftables let it through" + (
                f" (last: {last.verdict} in {last.family} {last.table} {last.chain})" if last else "")
        if self._lost:
            reason += "; some trace messages were lost (socket overflow)"
        extra = legacy or self._legacy_missing
        return f"{reason}; {extra}" if extra else reason

    @staticmethod
    async def _run(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        try:
            proc = await trio.run_process(argv, stdin=(stdin or "").encode(), capture_stdout=True,
                                          capture_stderr=True, check=False)
        except OSError as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def sweep_leftovers(*, nft: str = "nft") -> int:
    """Delete every ``netprobe_trace_*`` table in this namespace (left by a process that died
    holding one); how many were deleted. Nothing else is touched; no nft, no tables: 0."""
    if shutil.which(nft) is None:
        return 0
    try:
        listing = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    swept = 0
    for family, name in trace_tables(listing.stdout if listing.returncode == 0 else ""):
        try:
            done = subprocess.run([nft, "delete", "table", family, name], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        swept += done.returncode == 0
    return swept
