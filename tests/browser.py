"""A real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

FLAGS = (
    "--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking"
    " --disable-component-update --disable-sync --disable-quic --window-size=1366,800"
    " --ignore-certificate-errors"  # the tests' TLS servers have self-signed certificates
).split()
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# CONSOLE_SCREENSHOTS=docs/images makes the tests save the screenshots the docs show.
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")


class Browser:
    def __init__(self, downloads: Path, zone: str = "Asia/Tokyo"):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
            pytest.skip("needs Debian's chromium and chromium-driver (scripts/install-system-deps.sh)")
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # The viewer's zone is not the server's (UTC): times must be shown in the viewer's.
        service = Service(DRIVER, env={**os.environ, "TZ": zone})
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(20)

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def wait(self, predicate, timeout: float = 10.0):
        """Poll ``predicate(driver)`` until it is truthy (Selenium's deadline); its value."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        waiting = WebDriverWait(self.driver, timeout, 0.05, ignored_exceptions=[StaleElementReferenceException])
        return waiting.until(lambda d: predicate(d))

    def find(self, css: str, timeout: float = 10.0):
        return self.wait(lambda d: (found := d.find_elements("css selector", css)) and found[0], timeout)

    def all(self, css: str) -> list:
        return self.driver.find_elements("css selector", css)

    def ids(self, css: str) -> list[str]:
        """The ``data-id`` of every element ``css`` finds, read at one instant."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute('data-id'))"
        return self.driver.execute_script(script, css)

    def text(self, css: str = "main") -> str:
        return self.find(css).text

    def errors(self) -> list[str]:
        """The console's JavaScript errors since the last call (answers the tests ask for aside)."""
        logs = self.driver.get_log("browser")
        return [e["message"] for e in logs if e["level"] == "SEVERE" and e.get("source") != "network"]

    def shot(self, name: str) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SHOTS) / f"console-{name}.png"))
