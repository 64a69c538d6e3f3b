"""Headless Chromium driven by Selenium, for the report page's tests: the system's ``chromium`` and
``chromedriver`` (Debian's ``chromium`` and ``chromium-driver`` packages; ``.ci/run`` installs them), never a
browser downloaded at run time. Tests that ask for one skip, saying why, where either is absent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> Iterator[Any]:
    """A headless Chromium session (a ``selenium.webdriver.Chrome``) that keeps its console log; quit after."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("headless Chromium is absent: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: Any, page: Path) -> None:
    """Load ``page`` from disk and wait until its script has drawn the cards (``body[data-ready]``)."""
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def console_errors(driver: Any) -> list[str]:
    """The page's console messages of level SEVERE (errors, failed loads) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
