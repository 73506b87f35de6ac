"""`--format html` in a real browser: headless Chromium (Debian's) loads the page of a 1,000-host
result, the DOM names the blocked flow, and the canvas pixel of the blocked cell is red."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from netprobe.core.matrix_store import MatrixStore, pack
from netprobe.core.result import Evidence, HostInfo, Reach, Result, Verdict, Where
from netprobe.core.checks import select_checks
from netprobe.report.heatmap_page import render_page

N = 1000
BLOCKED = ("bgp", "node-7", "node-33")


def thousand_hosts() -> Result:
    names = [f"node-{i}" for i in range(N)]
    checks = select_checks("calico")
    store = MatrixStore(names, ["bgp", "ipip"])
    allowed = pack(Reach.ALLOWED, None, Verdict.OPEN)
    answered = pack(Reach.ALLOWED, None, Verdict.ANSWERED)
    row = bytes([allowed]) * (N * N)
    store.codes[0][:] = row
    store.codes[1][:] = bytes([answered]) * (N * N)
    for k in (0, 1):
        for i in range(N):
            store.codes[k][i * N + i] = 0
    from netprobe.core.result import Cell

    store.put(Cell(*BLOCKED, Reach.BLOCKED, Where.DESTINATION_INGRESS, Verdict.FILTERED, None,
                   Evidence(arrived=True, accepted=False, answered=False, attempts=2)))
    store.recount()
    hosts = [HostInfo(n, f"198.18.{i // 250}.{i % 250 + 1}", ("node",)) for i, n in enumerate(names)]
    return Result(cells=store, hosts=hosts, checks=[c.to_dict() for c in checks[:2]], profile="calico")


@pytest.fixture
def browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium/chromium-driver missing: `make test` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1200", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def test_a_1000_host_page_renders_and_shows_the_red_cell(browser, tmp_path):
    from selenium.webdriver.common.by import By

    t0 = time.perf_counter()
    page = render_page(thousand_hosts())
    build_s = time.perf_counter() - t0
    path = tmp_path / "mesh.html"
    path.write_text(page)
    assert "http://" not in page and "https://" not in page  # self-contained: no CDN
    t0 = time.perf_counter()
    browser.get(path.as_uri())
    for _ in range(300):
        if browser.execute_script("return window.netprobeReady || null"):
            break
        time.sleep(0.05)
    load_s = time.perf_counter() - t0
    ready = browser.execute_script("return window.netprobeReady")
    print(f"\n1,000 hosts: page {len(page) / 1e6:.1f} MB built in {build_s:.2f} s; "
          f"loaded and drawn in {load_s:.2f} s (script {ready['ms'] / 1000:.2f} s)")
    assert ready["hosts"] == N and load_s <= 5
    [li] = browser.find_elements(By.CSS_SELECTOR, "ol#failing li")
    assert (li.get_attribute("data-check"), li.get_attribute("data-src"), li.get_attribute("data-dst")) == BLOCKED
    assert li.get_attribute("data-where") == "destination-ingress"
    text = browser.execute_script("return window.netprobeDescribe('bgp', 7, 33)")
    assert "node-7 -> node-33: blocked at destination-ingress" in text and "node-33's INPUT" in text
    # the canvas pixel of the blocked cell is red, its neighbour's green
    pixel = """const c = document.querySelector('canvas[data-check="bgp"]'), s = +c.dataset.cell;
               const d = c.getContext('2d').getImageData(arguments[1] * s, arguments[0] * s, 1, 1).data;
               return [d[0], d[1], d[2]];"""
    r, g, b = browser.execute_script(pixel, 7, 33)
    assert r > 200 and g < 80 and b < 80
    r, g, b = browser.execute_script(pixel, 500, 600)
    assert g > 150 and r < 100
    png = browser.get_screenshot_as_png()
    (tmp_path / "mesh.png").write_bytes(png)
    if os.environ.get("NETPROBE_SCREENSHOT"):
        shutil.copy(tmp_path / "mesh.png", os.environ["NETPROBE_SCREENSHOT"])
    # filter by host: the row of node-7 stays, the rest dims
    browser.find_element(By.ID, "hostfilter").send_keys("node-7")
    alpha = browser.execute_script(pixel.replace("return [d[0], d[1], d[2]]", "return d[3]"), 500, 600)
    assert alpha < 255 or browser.execute_script(pixel, 500, 600)[1] < 150
