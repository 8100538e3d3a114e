"""The page at / records, takes a file or captions live from a fake microphone, in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import DATA, Fixture, StartServer
from tests.helpers import assert_has_words

T = TypeVar("T")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = os.environ.get("TRANSCRIBE_PAGE_SCREENSHOT")
"""When set, the live captions test (Opus) also picks a file and saves the page there (the README's screenshot)."""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver (make test)"
    ),
]


def chromium(profile: Path, microphone: Path) -> webdriver.Chrome:
    """Headless Chromium whose microphone plays `microphone` and whose permission prompts are answered yes."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        f"--user-data-dir={profile}",
        "--window-size=900,640",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def transcript_shown(driver: webdriver.Chrome) -> str:
    """Wait until the page shows a transcript or an error; return the transcript's text."""

    def settled(d: webdriver.Chrome) -> bool:
        shown = d.find_element(By.ID, "transcript").text.strip()
        failed = "error" in (d.find_element(By.ID, "status").get_attribute("class") or "")
        return bool(shown) or failed

    WebDriverWait(driver, 120, poll_frequency=0.2).until(settled)
    status = driver.find_element(By.ID, "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text
    return driver.find_element(By.ID, "transcript").text


async def in_browser(tmp_path: Path, microphone: Path, steps: Callable[[webdriver.Chrome], T]) -> T:
    """Run blocking browser steps off the event loop (the server under test runs on it)."""

    def run() -> T:
        driver = chromium(tmp_path / "chromium-profile", microphone)
        try:
            return steps(driver)
        finally:
            driver.quit()

    return await asyncio.to_thread(run)


async def test_record_then_transcribe_shows_the_spoken_words(
    start_server: StartServer, spoken: dict[str, Fixture], tmp_path: Path
) -> None:
    """Recording the fake microphone (speech_en.wav) and stopping shows its words with timestamps."""
    server = await start_server(http_port=0)
    fixture = spoken["speech_en.wav"]

    def record(driver: webdriver.Chrome) -> str:
        driver.get(f"{server.http_url}/")
        button = driver.find_element(By.ID, "record")
        button.click()
        WebDriverWait(driver, 10).until(lambda d: button.get_attribute("data-recording") == "true")
        time.sleep(fixture.duration + 1.5)
        button.click()
        return transcript_shown(driver)

    shown = await in_browser(tmp_path, fixture.path, record)
    # Through Chromium's 48 kHz capture and Opus, tiny.en may hear "sells sea shells" as "tells she tells".
    assert_has_words(shown, ("quick", "brown", "fox", "lazy", "dog", "sea shore"))
    assert "00:00.0 →" in shown


async def test_picking_a_file_shows_its_transcript(
    start_server: StartServer, spoken: dict[str, Fixture], tmp_path: Path
) -> None:
    """Choosing an MP3 in the file picker uploads it and shows its words, one timed line per segment."""
    server = await start_server(http_port=0)
    fixture = spoken["speech_en.mp3"]

    def pick(driver: webdriver.Chrome) -> str:
        driver.get(f"{server.http_url}/")
        WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model option")) > 1)
        driver.find_element(By.ID, "file").send_keys(str(fixture.path))
        return transcript_shown(driver)

    shown = await in_browser(tmp_path, DATA / "speech_en.wav", pick)
    assert_has_words(shown, fixture.expected_words)
    assert len(shown.splitlines()) >= 2


@pytest.mark.parametrize("live_format", ["webm-opus", "linear16"])
async def test_live_captions_show_the_spoken_words(
    start_server: StartServer, spoken: dict[str, Fixture], tmp_path: Path, live_format: str
) -> None:
    """Live captions stream the fake microphone (MediaRecorder's WebM/Opus, or Web Audio's 16 kHz PCM) over the
    WebSocket: grey interims show while it speaks, and the finals have its words once it is stopped."""
    server = await start_server(http_port=0)
    fixture = spoken["speech_en.wav"]

    def caption(driver: webdriver.Chrome) -> tuple[str, bool]:
        driver.get(f"{server.http_url}/")
        driver.execute_script("document.getElementById('live-format').value = arguments[0]", live_format)
        button = driver.find_element(By.ID, "live")
        button.click()
        WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "status").text.startswith("Live:"))
        interim_seen = False
        speaking_until = time.monotonic() + fixture.duration + 1.5
        while time.monotonic() < speaking_until:
            interims = driver.find_elements(By.CSS_SELECTOR, "#captions .interim")
            interim_seen = interim_seen or any(element.text.strip() for element in interims)
            time.sleep(0.2)
        button.click()
        WebDriverWait(driver, 60, poll_frequency=0.2).until(lambda d: button.get_attribute("data-live") == "false")
        status = driver.find_element(By.ID, "status")
        assert "error" not in (status.get_attribute("class") or ""), status.text
        assert status.text == "Live captions ended."
        finals = " ".join(element.text for element in driver.find_elements(By.CSS_SELECTOR, "#captions .final"))
        if SCREENSHOT and live_format == "webm-opus":
            driver.find_element(By.ID, "file").send_keys(str(spoken["speech_en.mp3"].path))
            transcript_shown(driver)
            chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(900, int(chrome) + int(height))  # the whole page, both cards filled
            driver.save_screenshot(SCREENSHOT)
        return finals, interim_seen

    finals, interim_seen = await in_browser(tmp_path, fixture.path, caption)
    # Through Chromium's capture, live tiny.en may also hear "the lazy dog" as "the lazy target".
    assert_has_words(finals, ("quick", "brown", "fox", "lazy", "sea shore"))
    assert interim_seen, "no interim caption was shown while the microphone spoke"
