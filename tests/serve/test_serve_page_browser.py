"""The chat page in real headless Chromium, driven as a person would, against `diffutron serve`.

The server is the shared one of these tests (tests/serve/conftest.py: the embedded model behind an
API key), a real process on a free loopback port. What the page sent is read from the browser's
network log; what the server made of it from /metrics and from the same request asked again
without streaming, which must give the answer, model calls and tokens the page shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import jsonschema
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from helpers.server import API_KEY, MODEL

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SEED = 0
QUESTIONS = ["«kitap» ne demek?", "«ev» ne demek?", "«güzel» kelimesinin eş anlamlısı nedir?"]
SYSTEM = "Sen yardımsever bir asistansın."
# The turn that is stopped: one block of 128 positions in 256 model calls, several seconds on a CPU,
# so the stop reaches the server while it is still denoising even on a fast machine
SLOW = {"max_tokens": 128, "steps": 256, "block_length": 128}
CHAT = "/v1/chat/completions"

if CHROMIUM is None or CHROMEDRIVER is None:
    message = "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
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


def _set(driver, field, value):
    element = driver.find_element(By.ID, field)
    element.clear()
    element.send_keys(str(value))


def _chat_requests(driver):
    """The bodies of the chat requests the page sent since the last look (the browser's network log)."""
    bodies = []
    for entry in driver.get_log("performance"):
        event = json.loads(entry["message"])["message"]
        request = event.get("params", {}).get("request", {})
        if event["method"] == "Network.requestWillBeSent" and request.get("url", "").endswith(CHAT):
            bodies.append(json.loads(request["postData"]))
    return bodies


def _check_against_the_api(server, answer, request):
    """The shown answer, model calls and tokens are the server's for the same request, not streamed."""
    replay = {name: value for name, value in request.items() if name not in ("stream", "stream_options")}
    with server.client() as http:
        response = http.post(CHAT, json=replay)
    assert response.status_code == 200, response.text
    body = response.json()
    text = body["choices"][0]["message"]["content"]
    assert text and answer.find_element(By.CSS_SELECTOR, ".canvas").text == text
    stats = answer.find_element(By.CSS_SELECTOR, ".stats").text
    assert re.fullmatch(r"\d+ model calls · \d+ tokens · \d+\.\d s", stats), stats
    calls, tokens = (int(number) for number in re.findall(r"(\d+) (?:model calls|tokens)", stats))
    assert (calls, tokens) == (body["diffutron"]["model_calls"], body["usage"]["completion_tokens"])
    return text


def test_chat_page_streams_frames_stops_keeps_the_conversation_and_asks_for_a_key(server, browser, tmp_path):
    driver = browser
    # the server wants a key: the page asks for it on the first 401 and keeps it for the tab
    driver.get(server.url + "/")
    _wait(driver, driver.find_element(By.ID, "key-dialog").is_displayed, message="no key dialog after the 401")
    errors = _severe(driver)
    assert len(errors) == 1 and "401" in errors[0]["message"], errors  # only the refused request
    driver.find_element(By.ID, "api-key").send_keys(API_KEY + Keys.ENTER)
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == MODEL)
    assert driver.execute_script("return sessionStorage.getItem('diffutron-api-key')") == API_KEY
    driver.find_element(By.ID, "system").send_keys(SYSTEM)
    driver.find_element(By.ID, "seed").send_keys(str(SEED))
    _chat_requests(driver)  # empties the network log

    # first turn: placeholders while it denoises, then the answer, with calls, tokens and seconds
    _ask(driver, QUESTIONS[0])
    _wait(
        driver,
        lambda: (
            driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .canvas .mask")
            and driver.find_elements(By.CSS_SELECTOR, ".turn.assistant .canvas .fresh")
        ),
        message="no frame showed a newly committed token among the placeholders",
    )
    _wait(driver, lambda: _finished(driver, 1))
    answer = _answers(driver)[0]
    assert not answer.find_elements(By.CSS_SELECTOR, ".mask, .fresh, .end")
    [request] = _chat_requests(driver)
    first = _check_against_the_api(server, answer, request)
    answer.find_element(By.CSS_SELECTOR, "button.copy").click()
    _wait(driver, lambda: answer.find_element(By.CSS_SELECTOR, "button.copy").text == "Copied")

    # second turn: the whole conversation goes with it, and the settings
    _ask(driver, QUESTIONS[1])
    _wait(driver, lambda: _finished(driver, 2))
    [request] = _chat_requests(driver)
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": first},
        {"role": "user", "content": QUESTIONS[1]},
    ]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_denoising": True, "include_usage": True}
    assert {name: request[name] for name in ("model", "seed", "steps", "block_length", "max_tokens", "speed")} == {
        "model": MODEL,
        "seed": SEED,
        "steps": 64,
        "block_length": 32,
        "max_tokens": 64,
        "speed": "exact",
    }
    second = _check_against_the_api(server, _answers(driver)[1], request)
    driver.save_screenshot(str(tmp_path / "chat.png"))

    # stop, pressed while the placeholders are still there: the server drops the row, the turn stays out
    dropped = server.metric("diffutron_dropped_rows_total", reason="client_left")
    generated = server.metric("diffutron_generated_tokens_total")
    for field, value in SLOW.items():
        _set(driver, field, value)
    _ask(driver, QUESTIONS[2])
    _wait(
        driver,
        lambda: len(_answers(driver)) == 3 and _answers(driver)[2].find_elements(By.CSS_SELECTOR, ".canvas .fresh"),
    )
    driver.find_element(By.ID, "stop").click()  # at once: a screenshot first would give the server time to end
    _wait(driver, lambda: "stopped" in _answers(driver)[2].get_attribute("class"))
    assert _answers(driver)[2].find_elements(By.CSS_SELECTOR, ".canvas .mask")  # it was stopped mid-way
    driver.save_screenshot(str(tmp_path / "stopped.png"))
    assert driver.find_element(By.ID, "send").is_displayed()
    _wait(
        driver,
        lambda: server.metric("diffutron_dropped_rows_total", reason="client_left") == dropped + 1,
        timeout=20,
        message="the server never dropped the stopped row",
    )
    assert server.metric("diffutron_generated_tokens_total") == generated  # nothing was answered
    [request] = _chat_requests(driver)
    assert {name: request[name] for name in SLOW} == SLOW

    # the next turn: model card defaults, the fast preset, the conversation without the stopped turn
    driver.find_element(By.ID, "defaults").click()
    driver.find_element(By.CSS_SELECTOR, 'input[name="speed"][value="fast"]').click()
    _set(driver, "seed", SEED)
    _ask(driver, QUESTIONS[1])
    _wait(driver, lambda: _finished(driver, 4))
    [request] = _chat_requests(driver)
    assert request["messages"][1:] == [
        {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": first},
        {"role": "user", "content": QUESTIONS[1]},
        {"role": "assistant", "content": second},
        {"role": "user", "content": QUESTIONS[1]},  # a question the embedded model answers after this history
    ]
    assert {name: request[name] for name in ("speed", "seed", *SLOW)} == {
        "speed": "fast",
        "seed": SEED,
        "max_tokens": 64,
        "steps": 64,
        "block_length": 32,
    }
    _check_against_the_api(server, _answers(driver)[3], request)
    assert _severe(driver) == []

    # a narrow phone screen: nothing wider than the screen, the composer reachable; the key is not asked again
    driver.set_window_size(390, 844)
    driver.refresh()
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == MODEL)
    assert not driver.find_element(By.ID, "key-dialog").is_displayed()
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert driver.find_element(By.ID, "prompt").is_displayed()
    driver.save_screenshot(str(tmp_path / "phone.png"))
    assert _severe(driver) == []


def test_the_seed_field_sends_its_digits_exactly(server, browser):
    """A seed above 2**53 (which a JavaScript number rounds) goes out as typed; `1e3` is refused, not read as 1."""
    driver = browser
    driver.get(server.url + "/")
    _wait(driver, driver.find_element(By.ID, "key-dialog").is_displayed, message="no key dialog after the 401")
    driver.find_element(By.ID, "api-key").send_keys(API_KEY + Keys.ENTER)
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == MODEL)
    for field, value in {"max_tokens": 8, "steps": 8, "block_length": 8, "temperature": 0.8}.items():
        _set(driver, field, value)
    _chat_requests(driver)  # empties the network log

    seed = 2**53 + 1
    _set(driver, "seed", seed)
    _ask(driver, QUESTIONS[0])
    _wait(driver, lambda: _finished(driver, 1))
    [request] = _chat_requests(driver)
    assert request["seed"] == seed
    _check_against_the_api(server, _answers(driver)[0], request)  # the same answer for the same seed

    for shown, typed in enumerate(("1e3", "12.5", "-1", str(2**64)), start=2):
        _set(driver, "seed", typed)
        _ask(driver, QUESTIONS[1])
        _wait(driver, lambda shown=shown: len(_answers(driver)) == shown)
        assert "error" in _answers(driver)[-1].get_attribute("class")
        assert "Seed: give a whole number from 0 to 18446744073709551615" in _answers(driver)[-1].text, typed
        assert _chat_requests(driver) == [], typed  # nothing was sent
    assert len(_severe(driver)) == 1  # the first 401 only


def test_a_json_schema_in_the_settings_asks_for_a_structured_answer(server, browser):
    """The page sends the schema as response_format and shows the JSON answer the API gives for it."""
    driver = browser
    driver.get(server.url + "/")
    _wait(driver, driver.find_element(By.ID, "key-dialog").is_displayed, message="no key dialog after the 401")
    driver.find_element(By.ID, "api-key").send_keys(API_KEY + Keys.ENTER)
    _wait(driver, lambda: driver.find_element(By.ID, "model-name").text == MODEL)
    driver.execute_script("document.getElementById('settings').open = true")
    schema = {"type": "object", "properties": {"anlam": {"type": "string", "maxLength": 20}}, "required": ["anlam"]}
    _set(driver, "json-schema", json.dumps(schema))
    _set(driver, "seed", 3)
    _chat_requests(driver)  # empties the network log
    _ask(driver, QUESTIONS[0])
    _wait(driver, lambda: _finished(driver, 1))
    [request] = _chat_requests(driver)
    assert request["response_format"] == {"type": "json_schema", "json_schema": {"name": "page", "schema": schema}}
    text = _check_against_the_api(server, _answers(driver)[0], request)
    jsonschema.validate(json.loads(text), schema)

    _set(driver, "json-schema", "{not json")
    _ask(driver, QUESTIONS[1])
    _wait(driver, lambda: len(_answers(driver)) == 2)
    assert "Check the settings: JSON schema:" in _answers(driver)[-1].text
    assert _chat_requests(driver) == []  # nothing was sent
