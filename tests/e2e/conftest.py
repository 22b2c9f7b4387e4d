"""Browser tests: Debian's Chromium driven by Playwright (sync API) against ``cschat run --demo``.

The browser is the system's ``chromium`` (Playwright never downloads one); without it,
or without the ``playwright`` package, the browser tests are skipped. Each test gets
its own server process (:class:`DemoServer`) with its database in the test's temp
folder; pages get a fresh browser context each, so every visitor is a new one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import cschat_script, free_port, query, write_config

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extras install it
    sync_playwright = expect = None

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output"  # git-ignored; screenshots of the runs go here
TIMEOUT_MS = 10_000  # one expectation
START_TIMEOUT = 15  # seconds for `cschat run` to answer
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


class DemoServer:
    """``cschat run --demo`` as a child process; killed and started again on the same
    configuration file and port (``restart``), as an operator would."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.config = write_config(folder, {"server": {"port": self.port, "host": "127.0.0.1"}})
        self.url = f"http://127.0.0.1:{self.port}"
        self.console_url = self.url + "/console/"
        self.demo_url = self.url + "/demo/"
        self.passwords: dict[str, str] = {}
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def db_path(self) -> Path:
        return self.folder / "chat.db"

    def db(self, sql: str, params=()) -> list[tuple]:
        return query(self.db_path, sql, params)

    def start(self) -> DemoServer:
        self.starts += 1
        out_path = self.folder / f"server{self.starts}.out"
        with open(self.folder / "server.log", "ab") as log, open(out_path, "wb") as out:
            self.process = subprocess.Popen(
                [cschat_script(), "run", "--demo", "--config", self.config],
                cwd=self.folder, stdin=subprocess.DEVNULL, stdout=out, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cschat run exited:\n{self.log()}"
            text = out_path.read_text(errors="replace")
            if "demo shop page:" in text and self._healthy():
                # Fresh passwords on every start: "sign in as    alice / <password>".
                self.passwords = dict(re.findall(r"sign in as\s+(\S+) / (\S+)", text))
                assert {"alice", "bob"} <= set(self.passwords), text
                assert self.console_url in text and self.demo_url in text, text
                return self
            time.sleep(0.05)
        raise AssertionError(f"cschat run --demo did not start:\n{self.log()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _browser_skip_reason() -> str | None:
    if sync_playwright is None:
        return "the playwright package is not installed (pip install '.[test]')"
    if shutil.which("chromium") is None:
        return "no chromium on PATH (Debian: apt-get install chromium)"
    return None


@pytest.fixture(scope="package")
def browser():
    """One headless Debian Chromium for the package's tests."""
    reason = _browser_skip_reason()
    if reason:
        pytest.skip(reason)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                              headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def demo(browser, tmp_path):
    """A started ``cschat run --demo`` with its database in the test's temp folder."""
    server = DemoServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.kill()


@pytest.fixture
def new_page(browser):
    """``new_page()`` → a page in a fresh browser context (its own storage: a new visitor
    or another agent). Uncaught script errors of any page fail the test."""
    contexts = []
    errors: list[str] = []

    def make():
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        page.on("dialog", lambda dialog: errors.append(f"{page.url}: dialog {dialog.message!r}")
                or dialog.dismiss())
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, "script errors or dialogs in the pages:\n" + "\n".join(errors)


@pytest.fixture
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT
