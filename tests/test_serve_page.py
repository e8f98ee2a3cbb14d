"""serve.py's page in a real browser (Debian's headless Chromium through Selenium): a stroke drawn on the canvas,
an uploaded and a dropped image each show the server's top classes for exactly the image sent, with the latency;
a server with a token has the page ask for it once."""
import base64
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import drawing, png_bytes
from test_evaluate import CLASSES
from test_serve import Server, tiny_run  # noqa: F401  (the session's tiny deployed run)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1000,800"]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: "
                                                             "pip install -r requirements-serve.txt")
missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
pytestmark = [
    pytest.mark.skipif(bool(missing), reason=f"no browser to test the page with: {', '.join(missing)} missing "
                                             f"(apt-get install chromium chromium-driver)"),
    pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning"),  # deploying the tiny run
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"),
]


def chromium(tmp_path_factory):
    """Headless Chromium with a profile of its own."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def page(tiny_run, tmp_path_factory):  # noqa: F811
    """The served page open in headless Chromium, with the server behind it."""
    server = Server(tiny_run[1])
    browser = chromium(tmp_path_factory)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        wait(browser, lambda b: "model.tflite" in b.find_element("id", "about").text)
        yield browser, server
    finally:
        browser.quit()
        server.stop()


def wait(browser, condition):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # an answer's rows are replaced as they are read now and then: read them again
    return WebDriverWait(browser, 30, ignored_exceptions=[StaleElementReferenceException]).until(condition)


def shown(browser):
    """The page's answer: [(class name, "12.3%")] best first, and the latency line."""
    rows = browser.find_elements("css selector", "#top li")
    return ([(row.find_element("class name", "name").text, row.find_element("class name", "prob").text)
             for row in rows], browser.find_element("id", "latency").text)


def answered_after(browser, sent_before):
    """Waits for a new answer (a new image sent, its rows shown) and returns it with the image sent."""
    wait(browser, lambda b: b.find_element("id", "sent").get_attribute("src") != sent_before
         and shown(b)[1])
    sent = browser.find_element("id", "sent").get_attribute("src")
    return sent, shown(browser)


def expected_rows(server, data_url):
    """What the page should show for the image it sent: the REST answer for the same bytes, best first."""
    probabilities = server.predict([{"b64": data_url.split(",", 1)[1]}])[0]
    order = np.argsort(-probabilities, kind="stable")[:5]
    return [(CLASSES[i], f"{100 * probabilities[i]:.1f}%") for i in order]


def test_a_drawn_stroke_shows_the_top_classes_for_the_drawing_and_the_latency(page):
    from selenium.webdriver.common.action_chains import ActionChains

    browser, server = page
    canvas = browser.find_element("id", "canvas")
    assert canvas.is_displayed()  # a one-channel model: the drawing canvas is offered
    before = browser.find_element("id", "sent").get_attribute("src")
    ActionChains(browser).move_to_element_with_offset(canvas, -100, -60).click_and_hold() \
        .move_by_offset(60, 10).move_by_offset(80, -5).release().perform()
    sent, (rows, latency) = answered_after(browser, before)
    assert sent.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1]))) as image:
        pixels = np.asarray(image.convert("L"))
    assert image.size == (112, 112) and pixels.max() > 200 and pixels.min() < 50  # white strokes on black
    assert rows == expected_rows(server, sent) and sorted(name for name, _ in rows) == sorted(CLASSES)
    assert "ms round trip" in latency and "ms in the server" in latency


def test_an_uploaded_image_shows_the_servers_answer_for_that_file(page, tmp_path):
    browser, server = page
    path = tmp_path / "upload.png"
    Image.fromarray(drawing(np.random.default_rng(4), 2, side=56)).save(path)
    before = browser.find_element("id", "sent").get_attribute("src")
    browser.find_element("id", "file").send_keys(str(path))
    sent, (rows, latency) = answered_after(browser, before)
    with open(path, "rb") as f:
        assert base64.b64decode(sent.split(",", 1)[1]) == f.read()  # the file itself, untouched by the page
    assert rows == expected_rows(server, sent) and rows[0][0] == "cat"
    assert "ms round trip" in latency


def test_a_dropped_image_is_classified_as_an_uploaded_one_is(page):
    browser, server = page
    data = png_bytes(drawing(np.random.default_rng(6), 0, side=40))
    before = browser.find_element("id", "sent").get_attribute("src")
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const dropped = new DataTransfer();
        dropped.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dropped, bubbles: true,
                                                                              cancelable: true }));
    """, base64.b64encode(data).decode())
    sent, (rows, _) = answered_after(browser, before)
    assert base64.b64decode(sent.split(",", 1)[1]) == data
    assert rows == expected_rows(server, sent) and rows[0][0] == "apple"


def test_a_file_that_is_not_an_image_shows_the_servers_message(page, tmp_path):
    browser, _ = page
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    browser.find_element("id", "file").send_keys(os.fspath(path))
    wait(browser, lambda b: "cannot decode image" in b.find_element("id", "error").text)
    assert shown(browser)[0] == []


def test_with_a_token_the_page_asks_for_it_once_and_sends_it(tiny_run, tmp_path_factory, tmp_path):  # noqa: F811
    token_file = tmp_path / "token.txt"
    token_file.write_text("page-token-42\n")
    server = Server(tiny_run[1], "--token_file", str(token_file), headers={"Authorization": "Bearer page-token-42"})
    browser = chromium(tmp_path_factory)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        asked = wait(browser, lambda b: b.find_element("id", "login").is_displayed() and b.find_element("id", "login"))
        assert "needs its token" in browser.find_element("id", "error").text
        browser.find_element("id", "token").send_keys("a-wrong-token\n")
        wait(browser, lambda b: "was refused" in asked.text and asked.is_displayed())
        browser.find_element("id", "token").clear()
        browser.find_element("id", "token").send_keys("page-token-42\n")
        wait(browser, lambda b: "model.tflite" in b.find_element("id", "about").text)
        assert not asked.is_displayed() and browser.find_element("id", "error").text == ""

        path = tmp_path / "upload.png"
        Image.fromarray(drawing(np.random.default_rng(4), 2, side=56)).save(path)
        browser.find_element("id", "file").send_keys(str(path))
        sent, (rows, _) = answered_after(browser, None)
        assert rows == expected_rows(server, sent)  # the prediction went through with the token

        browser.refresh()  # the same tab: the token is kept, not asked again
        wait(browser, lambda b: "model.tflite" in b.find_element("id", "about").text)
        assert not browser.find_element("id", "login").is_displayed()
    finally:
        browser.quit()
        server.stop()
