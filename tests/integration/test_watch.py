"""`netprobe watch` against a lab with responders, as an operator would run it: a real
Prometheus (Debian's package) scrapes it and evaluates deploy/prometheus's alert rules, and the
live page is opened in headless Chromium. A forgotten firewall rule shows as a blocked flow with
its place; fixing the rule makes the series disappear and the page's cell turn green by itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
NETPROBE = [sys.executable, "-m", "netprobe"]
INTERVAL = 2.0  # watch --interval
SCRAPE = 1.0    # Prometheus scrape_interval
BLOCKED = {"check": "bgp", "src": "node1", "dst": "node2", "where": "destination-ingress"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never via a proxy


def get(url: str, timeout: float = 5.0) -> bytes:
    with DIRECT.open(url, timeout=timeout) as r:
        return r.read()


def wait_for(what: str, fn, timeout: float, every: float = 0.2):
    """Poll ``fn`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last_exc})")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class WatchedLab:
    def __init__(self, name: str, url: str, proc: subprocess.Popen, log: Path):
        self.name, self.url, self.proc, self.log = name, url, proc, log

    def fix_bgp(self, action: str = "add") -> None:
        """The fix the demo scenario names: node1 joins node2's BGP peer set (``delete``: breaks it again)."""
        subprocess.run([*NETPROBE, "lab", "exec", self.name, "node2", "--", "nft", action, "element", "inet", "filter",
                        "bgp_peers", "{ 198.18.0.11 }"], check=True, capture_output=True, timeout=30)


@pytest.fixture
def watched_lab(tmp_path):
    name = f"k8s-{uuid.uuid4().hex[:6]}"
    procs = []
    try:
        up = subprocess.run([*NETPROBE, "lab", "up", "demo", "--name", name, "--responders"], capture_output=True,
                            text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        port = free_port()
        log = tmp_path / "watch.log"
        proc = subprocess.Popen([*NETPROBE, "watch", "-i", f"/run/netprobe/lab/{name}/inventory.yaml",
                                 "--interval", str(INTERVAL), "--timeout", "0.5", "--listen", f"tcp://127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_for("watch's /healthz", lambda: proc.poll() is None and get(f"{url}/healthz"), 30)
        yield WatchedLab(name, url, proc, log)
    finally:
        for p in procs:
            stop(p)
        subprocess.run([*NETPROBE, "lab", "down", name], capture_output=True, timeout=120)


@pytest.fixture
def prometheus(tmp_path, watched_lab):
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: `make test` installs Debian's prometheus package"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": f"{SCRAPE:g}s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO / "deploy" / "prometheus" / "netprobe-alerts.yaml")],
        "scrape_configs": [{"job_name": "netprobe", "static_configs": [
            {"targets": [watched_lab.url.removeprefix("http://")]}]}],
    }))
    log = tmp_path / "prometheus.log"
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        api = f"http://127.0.0.1:{port}/api/v1"
        wait_for("prometheus to answer", lambda: proc.poll() is None and get(f"{api}/status/buildinfo"), 60)

        def query(expr: str) -> list[dict]:
            data = json.loads(get(f"{api}/query?" + urllib.parse.urlencode({"query": expr})))
            assert data["status"] == "success", data
            return data["data"]["result"]

        query.api = api
        query.log = log
        yield query
    finally:
        stop(proc)


def blocked_series(query) -> list[dict]:
    return [r["metric"] for r in query('netprobe_flow_blocked{job="netprobe"}')]


def test_prometheus_scrapes_the_blocked_flow_and_sees_it_go(watched_lab, prometheus):
    started = time.monotonic()
    series = wait_for("the blocked flow in Prometheus", lambda: blocked_series(prometheus), 60)
    assert [{k: s[k] for k in BLOCKED} for s in series] == [BLOCKED]  # one flow blocked, nothing else
    [cells] = prometheus('netprobe_cells{check="bgp",reach="blocked"}')
    assert cells["value"][1] == "1"
    assert {r["metric"]["host"]: r["value"][1] for r in prometheus("netprobe_agent_up")} == \
        {"cp1": "1", "node1": "1", "node2": "1"}
    assert prometheus('histogram_count(netprobe_flow_rtt_seconds{check="bgp"})') or \
        prometheus('netprobe_flow_rtt_seconds_count{check="bgp"} > 0')
    # the example alert rule, evaluated by the real Prometheus: pending (its for: is 3m)
    alerts = wait_for("NetprobeFlowBlocked pending", lambda: [
        a for a in json.loads(get(f"{prometheus.api}/alerts"))["data"]["alerts"]
        if a["labels"]["alertname"] == "NetprobeFlowBlocked"], 20)
    assert {k: alerts[0]["labels"][k] for k in BLOCKED} == BLOCKED
    assert alerts[0]["annotations"]["summary"] == "bgp node1 -> node2 is blocked at destination-ingress"

    watched_lab.fix_bgp()
    fixed = time.monotonic()
    wait_for("the series to disappear", lambda: blocked_series(prometheus) == [], 2 * INTERVAL + SCRAPE + 3)
    gone_after = time.monotonic() - fixed
    print(f"\nblocked flow in Prometheus {fixed - started:.1f} s after start; gone {gone_after:.1f} s after the fix")
    assert gone_after <= 2 * INTERVAL + SCRAPE, f"the series stayed {gone_after:.1f} s after the fix"
    [cells] = prometheus('netprobe_cells{check="bgp",reach="blocked"}')
    assert cells["value"][1] == "0"
    runs = prometheus('netprobe_runs_total{outcome="complete"}')
    assert float(runs[0]["value"][1]) >= 2


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "chromium/chromium-driver missing: `make test` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1200", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium fetch a driver
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def cell(driver, check: str, src: str, dst: str) -> dict:
    from selenium.webdriver.common.by import By

    el = driver.find_element(By.CSS_SELECTOR, f'td[data-check="{check}"][data-src="{src}"][data-dst="{dst}"]')
    return {"reach": el.get_attribute("data-reach"), "where": el.get_attribute("data-where"), "text": el.text,
            "class": el.get_attribute("class")}


def timeline(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "timeline").text


def test_live_page_in_chromium_shows_the_blocked_cell_then_the_fix(watched_lab, browser, tmp_path):
    wait_for("a finished run", lambda: json.loads(get(f"{watched_lab.url}/result.json")), 30)
    browser.get(watched_lab.url + "/")
    assert browser.title == "netprobe watch"
    shown = wait_for("the blocked cell", lambda: (c := cell(browser, "bgp", "node1", "node2"))["reach"] == "blocked"
                     and c, 30)
    assert shown == {"reach": "blocked", "where": "destination-ingress", "text": "✗D", "class": "blocked"}
    assert cell(browser, "bgp", "node2", "node1")["reach"] == "allowed"
    assert "bgp node1 -> node2 is blocked at destination-ingress" in timeline(browser)
    browser.save_screenshot(str(tmp_path / "blocked.png"))
    browser.execute_script("window.__netprobe_marker = 42;")  # survives only if the page never reloads

    watched_lab.fix_bgp()
    wait_for("the cell to turn allowed", lambda: cell(browser, "bgp", "node1", "node2")["reach"] == "allowed",
             4 * INTERVAL + 5)
    assert cell(browser, "bgp", "node1", "node2") == {"reach": "allowed", "where": "", "text": "✓", "class": "allowed"}
    wait_for("the timeline line", lambda: "bgp node1 -> node2 became allowed" in timeline(browser), 10)
    lines = timeline(browser).splitlines()
    assert lines[0].endswith("bgp node1 -> node2 became allowed")  # newest first, with its time
    assert browser.execute_script("return window.__netprobe_marker;") == 42  # updated in place
    browser.save_screenshot(str(tmp_path / "fixed.png"))

    watched_lab.fix_bgp("delete")  # someone reverts the fix: the change is named as it happens
    wait_for("the cell to turn red again", lambda: cell(browser, "bgp", "node1", "node2")["reach"] == "blocked",
             4 * INTERVAL + 5)
    wait_for("the timeline line", lambda: "bgp node1 -> node2 became blocked at destination-ingress"
             in timeline(browser), 10)
    assert re.fullmatch(r"\d\d:\d\d:\d\d bgp node1 -> node2 became blocked at destination-ingress",
                        timeline(browser).splitlines()[0])
    assert browser.execute_script("return window.__netprobe_marker;") == 42
    shutil.copy(tmp_path / "blocked.png", "/tmp/k8s-watch-blocked.png") if os.environ.get("NETPROBE_KEEP_SHOTS") else None
    shutil.copy(tmp_path / "fixed.png", "/tmp/k8s-watch-fixed.png") if os.environ.get("NETPROBE_KEEP_SHOTS") else None
