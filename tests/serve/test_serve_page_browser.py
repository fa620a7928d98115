"""The chat page in real headless Chromium, driven as a person would, against a streaming server.

The server is tests/helpers/denoising_server.py (the page, /v1/models and streamed chat completions
with denoising frames from the embedded model), started as a real process on a free loopback port.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER = Path(__file__).parents[1] / "helpers" / "denoising_server.py"
SEED = 0
QUESTIONS = ["«kitap» ne demek?", "«ev» ne demek?", "«güzel» kelimesinin eş anlamlısı nedir?"]
SYSTEM = "Sen yardımsever bir asistansın."

if CHROMIUM is None or CHROMEDRIVER is None:
    message = "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


class FakeServer:
    """The server process; it starts loading at once, `url` waits until it listens."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen([sys.executable, str(SERVER), *arguments], stdout=subprocess.PIPE, text=True)
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            with selectors.DefaultSelector() as selector:
                selector.register(self.process.stdout, selectors.EVENT_READ)
                if not selector.select(timeout=120):
                    raise RuntimeError("the test server did not start within 120 s")
            self._url = self.process.stdout.readline().strip()
            assert self._url.startswith("http://127.0.0.1:"), self._url
        return self._url

    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "test/state", timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server():
    server = FakeServer("--frame-delay", "0.04")
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=60, message=""):
    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda _: condition(), message)


def _ask(driver, question):
    prompt = driver.find_element(By.ID, "prompt")
    prompt.send_keys(question)
    prompt.send_keys(Keys.ENTER)


def _answers(driver):
    return driver.find_elements(By.CSS_SELECTOR, ".turn.assistant")


def _finished(driver, count):
    answers = _answers(driver)
    return len(answers) == count and answers[-1].find_elements(By.CSS_SELECTOR, ".stats")


def _severe(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_chat_page_streams_frames_stops_keeps_the_conversation_and_asks_for_a_key(server, browser, tmp_path):
    driver = browser
    driver.get(server.url)
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == "diffutron-embedded")
    driver.find_element(By.ID, "system").send_keys(SYSTEM)
    driver.find_element(By.ID, "seed").send_keys(str(SEED))

    # first turn: placeholders while it denoises, then the answer, with calls, tokens and seconds
    _ask(driver, QUESTIONS[0])
    _wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .canvas .mask")
          and driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .canvas .fresh"),
          message="no frame showed a newly committed token among the placeholders")
    _wait(driver, lambda: _finished(driver, 1))
    first = server.state()["answers"][0]
    answer = _answers(driver)[0]
    assert first and answer.find_element(By.CSS_SELECTOR, ".canvas").text == first
    assert not answer.find_elements(By.CSS_SELECTOR, ".mask, .fresh")
    stats = answer.find_element(By.CSS_SELECTOR, ".stats").text
    assert re.fullmatch(r"\d+ model calls · \d+ tokens · \d+\.\d s", stats), stats
    answer.find_element(By.CSS_SELECTOR, "button.copy").click()
    _wait(driver, lambda: answer.find_element(By.CSS_SELECTOR, "button.copy").text == "Copied")

    # second turn: the whole conversation goes with it, and the settings
    _ask(driver, QUESTIONS[1])
    _wait(driver, lambda: _finished(driver, 2))
    assert _answers(driver)[1].find_element(By.CSS_SELECTOR, ".canvas").text == server.state()["answers"][1]
    request = server.state()["requests"][-1]
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": first}, {"role": "user", "content": QUESTIONS[1]}]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_denoising": True, "include_usage": True}
    assert {name: request[name] for name in ("model", "seed", "steps", "block_length", "max_tokens", "speed")} == {
        "model": "diffutron-embedded", "seed": SEED, "steps": 64, "block_length": 32, "max_tokens": 64,
        "speed": "exact"}
    driver.save_screenshot(str(tmp_path / "chat.png"))

    # stop: the stream is cancelled mid-way and the turn stays out of the conversation
    before = server.state()
    _ask(driver, QUESTIONS[2])
    _wait(driver, lambda: len(_answers(driver)) == 3
          and _answers(driver)[2].find_elements(By.CSS_SELECTOR, ".canvas .mask"))
    driver.find_element(By.ID, "stop").click()
    _wait(driver, lambda: "stopped" in _answers(driver)[2].get_attribute("class"))
    assert driver.find_element(By.ID, "send").is_displayed()
    _wait(driver, lambda: server.state()["cancelled"] == before["cancelled"] + 1, timeout=20,
          message="the server never saw the stream closed")
    assert server.state()["completed"] == before["completed"]
    driver.find_element(By.CSS_SELECTOR, 'input[name="speed"][value="fast"]').click()
    _ask(driver, QUESTIONS[0])
    _wait(driver, lambda: _finished(driver, 4))
    request = server.state()["requests"][-1]
    assert len(request["messages"]) == 6 and request["speed"] == "fast"  # system, two finished turns, question
    assert _severe(driver) == []

    # a narrow phone screen: nothing wider than the screen, the composer reachable
    driver.set_window_size(390, 844)
    driver.refresh()
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == "diffutron-embedded")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert driver.find_element(By.ID, "prompt").is_displayed()
    driver.save_screenshot(str(tmp_path / "phone.png"))
    assert _severe(driver) == []

    # a server with an API key: the page asks once, on the 401, and keeps the key for the tab
    driver.get(server.url + "locked/")
    _wait(driver, driver.find_element(By.ID, "key-dialog").is_displayed, message="no key dialog after the 401")
    driver.find_element(By.ID, "api-key").send_keys("sesame" + Keys.ENTER)
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == "diffutron-embedded")
    _ask(driver, QUESTIONS[1])
    _wait(driver, lambda: _finished(driver, 1))
    assert driver.execute_script("return sessionStorage.getItem('diffutron-api-key')") == "sesame"
    driver.refresh()
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == "diffutron-embedded")
    assert not driver.find_element(By.ID, "key-dialog").is_displayed()
    errors = _severe(driver)
    assert len(errors) == 1 and "401" in errors[0]["message"], errors  # only the first, refused request
