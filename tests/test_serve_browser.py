"""`ser-hf serve` in a real headless browser: upload a wav, wait for the result, compare with
`ser-hf predict` on the same file, save a screenshot.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed by ``.ci/run``; nothing is downloaded at
test time) and selenium + gradio (the ``serve`` and ``test`` extras). Skipped only on a developer
machine without a browser; with ``CI=true`` or ``SER_HF_REQUIRE_DATA=1`` a missing browser fails.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time

import numpy as np
import pytest
import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.data.corpora import get_corpus_spec
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone
from tests.helpers_audio import write_wav

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("SER_HF_REQUIRE_DATA") == "1" or os.environ.get("CI", "").lower() in ("1", "true")
SCREENSHOT_DIR = os.environ.get("SER_HF_SCREENSHOT_DIR")


def _browser_or_skip():
    if CHROMIUM and CHROMEDRIVER:
        return
    message = "chromium and chromium-driver are needed (apt-get install -y chromium chromium-driver)"
    if REQUIRED:
        pytest.fail(message + "; CI/SER_HF_REQUIRE_DATA forbids skipping this test")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    spec = get_corpus_spec("emodb")
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), task="multitask", labels=list(spec.labels),
                             label_names=spec.label_names, max_audio_seconds=1.0, head_dropout=0.0)
    model = SERModelForSpeech(config)
    folder = tmp_path_factory.mktemp("serve_model")
    model.save_pretrained(folder)
    build_feature_extractor(config).save_pretrained(folder)
    return str(folder)


def test_upload_in_headless_chromium_shows_the_predicted_label(model_dir, tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from ser_hf.commands.predict import main as predict_main
    from ser_hf.serve import launch

    rng = np.random.default_rng(1)
    n = int(2.6 * 22050)  # longer than the 1 s window: the page also draws the timeline
    wave = (0.3 * rng.standard_normal(n) * np.abs(np.sin(np.linspace(0, 7, n)))).astype(np.float32)
    path = write_wav(tmp_path / "upload.wav", wave, 22050)
    assert predict_main([model_dir, path, "--output_dir", str(tmp_path / "cli"), "--num_workers", "0"]) == 0
    expected = json.loads((tmp_path / "cli" / "predictions.json").read_text())["files"][0]

    demo, url = launch(model_dir, port=_free_port(), block=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#audio-input input[type=file]")))
        upload.send_keys(path)
        # The upload is done when the component shows a player for the file.
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#audio-input audio, #audio-input .waveform-container, #audio-input #waveform")))
        driver.find_element(By.CSS_SELECTOR, "#predict-button").click()
        box = "#predicted-label textarea, #predicted-label input"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, box).get_attribute("value"))
        shown = driver.find_element(By.CSS_SELECTOR, box).get_attribute("value")
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#timeline img")))
        time.sleep(0.5)  # let the image and the probability bars paint before the screenshot
        screenshot = str(tmp_path / "serve.png")
        driver.save_screenshot(screenshot)
        page = driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
        demo.close()
    if SCREENSHOT_DIR:
        os.makedirs(SCREENSHOT_DIR, exist_ok=True)
        shutil.copy(screenshot, os.path.join(SCREENSHOT_DIR, "serve.png"))
    assert shown == expected["label"], (shown, expected)
    # The probabilities and the attributes are on the page too.
    assert expected["label"] in page and "arousal" in page and "valence" in page
    assert os.path.getsize(screenshot) > 10_000
