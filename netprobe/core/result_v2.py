"""``netprobe.result/v2``: a result's cells as one character per cell per check, full evidence
only where it is not the plain evidence a cell's state implies (docs/design.md "Result JSON").

A 1,000-host calico mesh (2 million cells) is ~25 MB in this form instead of ~930 MB in v1.
Pure: strings in and out; reading is as strict as v1 (every field checked, one error naming it).
"""

from __future__ import annotations

import json
from array import array
from itertools import compress
from typing import Any

from netprobe.core.cells import MAX_CELLS, Cell, Reach, Verdict, Where, family
from netprobe.core.fields import InvalidReport, choice, integer, items, obj, text
from netprobe.core.matrix_store import ALL_CODES, DECODED, NO_CELL, MatrixStore, pack

SCHEMA = "netprobe.result/v2"

NO_CELL_CHAR = "."
# one character per (reach, where, verdict): letters first, then punctuation; never '.', '"' or '\'
ALPHABET = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            + "".join(chr(c) for c in range(33, 127) if chr(c) not in '."\\' and not chr(c).isalnum()))
assert len(ALPHABET) >= len(ALL_CODES)
CHAR = {code: ALPHABET[code - 1] for code in ALL_CODES}
_TO_CHARS = bytes.maketrans(bytes([NO_CELL, *ALL_CODES]), (NO_CELL_CHAR + "".join(CHAR.values())).encode())
MAX_RTT_US = 1 << 40


def _legend_entry(code: int) -> list:
    reach, where, verdict = DECODED[code]
    return [str(reach), None if where is None else str(where), str(verdict)]


def cells_to_v2(store: MatrixStore) -> dict[str, Any]:
    """The cell part of a v2 result: ``codes`` (the legend), ``matrices`` and ``detail``."""
    n = store.n
    used: set[int] = set()
    matrices = []
    for k, check in enumerate(store.checks):
        codes = store.codes[k]
        if not store.has_cells(k):
            continue
        head = {"check": check, **({"family": store.families[k]} if store.families[k] != 4 else {})}
        used |= set(codes) - {NO_CELL}
        column = store.rtt[k]
        rtt = (list(compress(column, codes)) if isinstance(column, array)
               else [column[pos] for pos in store.positions(k)])
        if rtt and min(rtt) < 0:
            rtt = [None if x < 0 else x for x in rtt]
        chars = bytes(codes).translate(_TO_CHARS).decode("ascii")
        if store.cell_count(k) * 4 < n * n:  # mostly empty (a sampled run): only the cells, row by row
            sparse = []
            for i in range(n):
                row = codes[i * n:(i + 1) * n]
                cols = [j for j, c in enumerate(row) if c] if row.count(0) != n else []
                if cols:
                    sparse.append([i, cols, "".join(chars[i * n + j] for j in cols)])
            matrices.append({**head, "rtt_us": rtt, "sparse": sparse})
            continue
        matrices.append({**head, "rtt_us": rtt, "rows": [chars[i * n:(i + 1) * n] for i in range(n)]})
    detail = [store.detail[key].to_dict() for key in sorted(store.detail)]
    return {"codes": {CHAR[c]: _legend_entry(c) for c in sorted(used)}, "matrices": matrices,
            "not_probed": {store.hosts[i]: reason for i, reason in sorted(store.not_probed.items())},
            "detail": detail}


def dumps_v2(d: dict[str, Any]) -> str:
    """JSON text with one matrix row and one detail cell per line: greppable, diffable, and
    encoded by the C encoder (``indent`` would send it down the pure-Python one)."""
    if d.get("schema") != SCHEMA:
        return json.dumps(d, indent=2) + "\n"
    dump = json.dumps
    out = ["{"]
    for key, value in d.items():
        if key == "matrices":
            out.append('  "matrices": [')
            for i, m in enumerate(value):
                kind = "rows" if "rows" in m else "sparse"
                family = f', "family": {dump(m["family"])}' if "family" in m else ""
                out.append(f'    {{"check": {dump(m["check"])}{family}, "rtt_us": {dump(m["rtt_us"])}, "{kind}": [')
                out.append(",\n".join(f"      {dump(r)}" for r in m[kind]))
                out.append("    ]}" + ("," if i < len(value) - 1 else ""))
            out.append("  ],")
        elif key == "detail":
            out.append('  "detail": [')
            out.append(",\n".join(f"    {dump(c, separators=(', ', ': '))}" for c in value))
            out.append("  ],")
        else:
            out.append(f"  {dump(key)}: {dump(value)},")
    out[-1] = out[-1].rstrip(",")
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"


def _dense_rows(raw: Any, n: int, field: str) -> list[str]:
    rows = [NO_CELL_CHAR * n] * n
    seen: set[int] = set()
    for r, entry in enumerate(items(raw, field, n)):
        at = f"{field}[{r}]"
        entry = items(entry, at, 3)
        if len(entry) != 3 or type(entry[0]) is not int or not 0 <= entry[0] < n or entry[0] in seen:
            raise InvalidReport(at, "must be [row index (once each), [column indexes], characters]")
        cols = items(entry[1], f"{at}[1]", n)
        if (set(map(type, cols)) - {int} or (cols and (min(cols) < 0 or max(cols) >= n))
                or sorted(set(cols)) != cols):
            raise InvalidReport(f"{at}[1]", f"must be increasing column indexes below {n}")
        chars = entry[2]
        if not isinstance(chars, str) or len(chars) != len(cols) or NO_CELL_CHAR in chars:
            raise InvalidReport(f"{at}[2]", "must be one character per column")
        row = [NO_CELL_CHAR] * n
        for j, ch in zip(cols, chars):
            row[j] = ch
        rows[entry[0]] = "".join(row)
        seen.add(entry[0])
    return rows


def cells_from_v2(d: dict, names: list[str], declared: list[str]) -> MatrixStore:
    """The cells of a v2 result (its header already read: host names, declared check ids). A
    matrix without ``family`` is IPv4 (every result before IPv6)."""
    if len(set(names)) != len(names):
        raise InvalidReport("hosts", "names a host twice")
    n = len(names)
    legend = obj(d.get("codes", {}), "codes")
    to_code = {NO_CELL_CHAR: NO_CELL}
    for ch, entry in legend.items():
        at = f"codes.{ch:.8}"
        if len(ch) != 1 or ch == NO_CELL_CHAR:
            raise InvalidReport(at, "must be one character other than '.'")
        entry = items(entry, at, 3)
        if len(entry) != 3:
            raise InvalidReport(at, "must be [reach, where, verdict]")
        where = None if entry[1] is None else choice(Where, entry[1], f"{at}[1]")
        to_code[ch] = pack(choice(Reach, entry[0], f"{at}[0]"), where, choice(Verdict, entry[2], f"{at}[2]"))
    matrices = items(d.get("matrices", []), "matrices", 4096)
    found = []
    for i, m in enumerate(matrices):
        obj(m, f"matrices[{i}]", ("check", "rtt_us"))
        if "sparse" in m:  # [[row, [columns], "chars"], ...]: expanded to dense rows here
            m = matrices[i] = {**m, "rows": _dense_rows(m["sparse"], n, f"matrices[{i}].sparse")}
        obj(m, f"matrices[{i}]", ("rows",))
        found.append((text(m["check"], f"matrices[{i}].check", limit=64),
                      family(m.get("family", 4), f"matrices[{i}].family")))
    if len(set(found)) != len(found):
        raise InvalidReport("matrices", "has a check (of one family) twice")
    sparse = any(isinstance(m, dict) and "sparse" in m for m in matrices)
    lanes = list(dict.fromkeys([*((c, 4) for c in declared), *found]))
    order = list(dict.fromkeys(c for c, _f in lanes))
    store = MatrixStore(names, sorted(lanes, key=lambda lane: (order.index(lane[0]), lane[1])), sparse=sparse)
    table = bytes.maketrans("".join(to_code).encode(), bytes(to_code.values()))
    for i, m in enumerate(matrices):
        at = f"matrices[{i}]"
        k = store.check_index[found[i]]
        rows = items(m["rows"], f"{at}.rows", n)
        if len(rows) != n:
            raise InvalidReport(f"{at}.rows", f"must have one row per host ({n}), got {len(rows)}")
        for r, row in enumerate(rows):
            if not isinstance(row, str) or len(row) != n or not row.isascii():
                raise InvalidReport(f"{at}.rows[{r}]", f"must be a string of {n} characters")
        joined = "".join(rows)
        unknown = set(joined) - set(to_code)
        if unknown:
            raise InvalidReport(f"{at}.rows", f"uses {sorted(unknown)[0]!r}, which codes does not define")
        codes = bytearray(joined.encode("ascii").translate(table))
        store.codes[k] = codes
        count = n * n - codes.count(b"\x00")
        store._count += count
        rtts = items(m["rtt_us"], f"{at}.rtt_us", MAX_CELLS)
        if len(rtts) != count:
            raise InvalidReport(f"{at}.rtt_us", f"must have one entry per cell ({count}), got {len(rtts)}")
        column = store.rtt[k]
        for j, (pos, us) in enumerate(zip(store.positions(k), rtts)):
            if us is None:
                continue
            if type(us) is not int or not 0 <= us <= MAX_RTT_US:
                integer(us, f"{at}.rtt_us[{j}]", MAX_RTT_US)  # raises with the field named
                raise InvalidReport(f"{at}.rtt_us[{j}]", "must be a whole number of microseconds")
            column[pos] = us
    for host, reason in obj(d.get("not_probed", {}), "not_probed").items():
        if host not in store.index:
            raise InvalidReport(f"not_probed.{host:.40}", "names a host the result does not declare")
        store.not_probed[store.index[host]] = text(reason, f"not_probed.{host:.40}", limit=4096)
    for i, raw in enumerate(items(d.get("detail", []), "detail", MAX_CELLS)):
        cell = Cell.from_dict(raw, f"detail[{i}]")
        if (cell.check, cell.family) not in store.check_index or cell.src not in store.index \
                or cell.dst not in store.index:
            raise InvalidReport(f"detail[{i}]", "names a check or host the result does not declare")
        store.put(cell)
    return store


__all__ = ["SCHEMA", "cells_to_v2", "cells_from_v2", "dumps_v2", "ALPHABET", "CHAR"]
