"""Drive the page of ``urllm serve`` in headless Chromium (selenium): the page test and the screenshot.

:class:`LoopbackServer` runs the app with uvicorn in a thread on 127.0.0.1 and a free port (loopback
only); :func:`open_page` starts headless Chromium with Debian's ``chromedriver``;
:func:`recommend_on_page` picks a user, a domain and k like a person would and reads the rendered top-k.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from typing import Any


class LoopbackServer:
    """``with LoopbackServer(app) as s: s.url`` -- uvicorn on 127.0.0.1, stopped on exit."""

    def __init__(self, app: Any, port: int = 0, timeout_s: float = 30.0) -> None:
        import uvicorn

        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.timeout_s = timeout_s

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=self.timeout_s)


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def open_page(url: str, width: int = 1400, height: int = 1000):
    """A headless Chromium (selenium WebDriver) showing ``url``, once the page has loaded /health."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium_binary() or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    driver.get(url)
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.getElementById('domain').options.length") > 0
    )
    return driver


def recommend_on_page(
    driver, *, user: str | None = None, history: list[str] | None = None, domain: str, k: int = 10,
    system: str | None = None, timeout_s: float = 120.0,
) -> dict[str, Any]:  # fmt: skip
    """Fill the form (a known user, or titles typed into the history box), press Recommend, and return
    what the page shows: top-k ids and titles, history and neighbour counts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    find = driver.find_element
    driver.execute_script("document.body.dataset.state = ''")
    if user is not None:
        Select(find(By.ID, "mode")).select_by_value("user")
        find(By.ID, "user").clear()
        find(By.ID, "user").send_keys(user)
    else:
        Select(find(By.ID, "mode")).select_by_value("history")
        for title in history or []:
            find(By.ID, "item").send_keys(title)
            find(By.ID, "add").click()
    Select(find(By.ID, "domain")).select_by_visible_text(domain)
    if system is not None:
        Select(find(By.ID, "system")).select_by_visible_text(system)
    find(By.ID, "k").clear()
    find(By.ID, "k").send_keys(str(k))
    find(By.ID, "go").click()
    WebDriverWait(driver, timeout_s).until(
        lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error")
    )
    if driver.execute_script("return document.body.dataset.state") == "error":
        raise RuntimeError("the page shows an error: " + find(By.ID, "error").text)
    rows = driver.find_elements(By.CSS_SELECTOR, "#topk tbody tr")
    return {
        "ids": [int(r.get_attribute("data-id")) for r in rows],
        "titles": [r.find_element(By.CSS_SELECTOR, "td.title").text for r in rows],
        "n_history": len(driver.find_elements(By.CSS_SELECTOR, "#history .chip")),
        "n_neighbours": len(driver.find_elements(By.CSS_SELECTOR, "#neighbours > div")),
    }
