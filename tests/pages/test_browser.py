"""The memory's pages in a real browser: headless Chromium against `datasette claude-mem serve`.

One server over a seeded memory (tests/test_pages.py's seed) on a free loopback port; the
browser signs in through the root link the server prints, then looks at the dashboard, a
session's page and row pages as a person would: what is shown, that the console stays free of
errors, and that stored `<script>` text is shown and never run. Screenshots go to
test-artifacts/. Needs Debian's chromium and chromium-driver (scripts/test installs them).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, stop_process
from test_views import HOSTILE, seed_memory

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ROOT_LINK = re.compile(r"http://127\.0\.0\.1:\d+/-/auth-token\?token=\w+")
# Every page: record alert() instead of showing it, so a script that ran is seen.
ALERT_TRAP = "window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m));"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        f"Chromium or its driver is missing ({CHROMIUM}, {CHROMEDRIVER}): "
        "install Debian's chromium and chromium-driver (bash scripts/test does)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
from selenium.webdriver.common.by import By  # noqa: E402


class Served:
    """A server starting up; `ready()` waits for it and reads the sign-in link it printed."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path, ids: dict[str, str]):
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.ids = ids
        self.root_link = ""

    def ready(self, timeout: float = 60.0) -> Served:
        deadline = time.monotonic() + timeout
        while not self.root_link:
            text = self.log.read_text(errors="replace")
            found = ROOT_LINK.search(text)
            if found and "startup complete" in text:
                self.root_link = found.group(0)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{text}")
            else:
                time.sleep(0.05)
        return self


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`datasette claude-mem serve` over a seeded memory, its worker off (still starting)."""
    base = tmp_path_factory.mktemp("browser") / "claude-mem"
    base.mkdir(mode=0o700)
    ids = seed_memory(base / "claude-mem.db")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE_MEM_", "DATASETTE_"))}
    env.update(CLAUDE_MEM_DIR=str(base), CLAUDE_MEM_WORKER="0")
    log = base.parent / "serve.log"
    datasette = Path(sys.executable).with_name("datasette")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(datasette), "claude-mem", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield Served(proc, port, log, ids)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def browser(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Chromium (started while the server starts), signed in as root."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
        driver.get(served.ready().root_link)
        assert driver.get_cookie("ds_actor"), "the root link signs in"
        driver.get_log("browser")
        yield driver
    finally:
        driver.quit()


def visit(driver, served: Served, path: str):
    driver.get(served.url + path)
    return driver


def check_clean(driver) -> None:
    """No console error, and no script from stored text ran."""
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    assert driver.execute_script("return window.__alerts") == []
    for script in driver.find_elements(By.TAG_NAME, "script"):
        assert "alert(1)" not in (script.get_attribute("innerHTML") or "")


def screenshot(driver, name: str) -> Path:
    """The whole page, as tall as it is (Chromium's own full-page capture)."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000)}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
    )
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    return path


def text(driver, selector: str) -> str:
    return " ".join(driver.find_element(By.CSS_SELECTOR, selector).text.split())


def test_dashboard_in_a_browser(browser, served: Served) -> None:
    visit(browser, served, "/-/claude-mem")
    assert browser.title == "Memory dashboard"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Memory"
    projects = text(browser, "#projects")
    assert "alpha" in projects and "/src/beta" in projects
    queue = text(browser, "#queue")
    assert "Dead letters 1 no attempts left" in queue
    assert "3 items, 1 done, 2 failed" in queue
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.cm-chart")
    assert len(charts) == 2 and all(c.size["width"] > 300 for c in charts)
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.cm-chart rect.cm-fill-tool_uses")
    assert len(bars) == 14 and max(b.size["height"] for b in bars) > 50
    # The stylesheet was served and applied: cards have a border.
    card = browser.find_element(By.CSS_SELECTOR, ".cm-card")
    assert card.value_of_css_property("border-top-style") == "solid"
    # The menu offers the dashboard.
    browser.find_element(By.CSS_SELECTOR, "details.nav-menu > summary").click()
    link = browser.find_element(By.LINK_TEXT, "Claude memory")
    assert link.is_displayed() and link.get_attribute("href").endswith("/-/claude-mem")
    browser.find_element(By.CSS_SELECTOR, "details.nav-menu > summary").click()
    assert HOSTILE in text(browser, "#learnings"), "stored markup shows as text"
    check_clean(browser)
    screenshot(browser, "dashboard")


def test_session_page_in_a_browser(browser, served: Served) -> None:
    visit(browser, served, "/-/claude-mem")
    browser.find_element(By.CSS_SELECTOR, 'a[href="/-/claude-mem/sessions/sess-alpha-1"]').click()
    assert browser.current_url.endswith("/-/claude-mem/sessions/sess-alpha-1")
    assert browser.title == "Session sess-alpha-1"
    entries = browser.find_elements(By.CSS_SELECTOR, "ol.cm-timeline > li:not(.cm-day)")
    kinds = [e.get_attribute("class") for e in entries]
    assert kinds == [
        "cm-kind-event", "cm-kind-prompt", "cm-kind-tool_use", "cm-kind-observation",
        "cm-kind-tool_use", "cm-kind-tool_use",
    ]  # fmt: skip
    assert f"Fix the tokenizer {HOSTILE}" in entries[1].text
    summary = browser.find_element(By.CSS_SELECTOR, "#summary .cm-text")
    assert summary.value_of_css_property("white-space") == "pre-wrap"
    assert summary.text == f"Fixed the tokenizer.\nTests pass. {HOSTILE}"
    assert "new Parser.feed method" in text(browser, "#files")
    check_clean(browser)
    screenshot(browser, "session")


def test_row_pages_in_a_browser(browser, served: Served) -> None:
    visit(browser, served, f"/claude-mem/observations/{served.ids['obs']}")
    assert browser.find_element(By.CSS_SELECTOR, "h2.cm-row-title").text == (
        f"Edited the parser {HOSTILE}"
    )
    blocks = browser.find_elements(By.CSS_SELECTOR, ".cm-row-view .cm-text")
    assert blocks[0].text == f"Parser.feed now keeps the trailing newline.\nSecond line {HOSTILE}"
    files = browser.find_elements(By.CSS_SELECTOR, ".cm-files-list a")
    assert [f.text for f in files] == ["/src/alpha/src/parser.py"]
    check_clean(browser)
    screenshot(browser, "row-observation")
    files[0].click()
    assert "/claude-mem/function_map?" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "table.rows-and-columns tbody tr")
    assert len(rows) == 5, "the file's functions as both sessions saw them"
    check_clean(browser)

    visit(browser, served, f"/claude-mem/pending_queue/{served.ids['q_done']}")
    outputs = browser.find_elements(By.CSS_SELECTOR, ".cm-row-view pre.cm-text")
    assert outputs[1].text == f"The file was edited.\n{HOSTILE}\nline three"
    check_clean(browser)
    screenshot(browser, "row-queue")

    visit(browser, served, "/-/claude-mem/context-preview?project=/src/alpha")
    markdown = browser.find_element(By.CSS_SELECTOR, "pre.cm-markdown").text
    assert markdown.startswith("# Memory of alpha\n"), "the heading names the folder"
    assert "/src/alpha" not in markdown, "paths in the context are relative to the project"
    check_clean(browser)
    screenshot(browser, "context-preview")
