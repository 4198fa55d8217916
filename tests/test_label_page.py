"""The review page of a label check in a real browser (Debian's headless chromium, driven by
selenium through chromedriver): it renders every card, filters by type, and the decisions it
saves go back through ``find_label_errors.py --apply``."""

import glob
import json
import os
import shutil
import time

import pytest
from label_testing import CONFIG, patch_evidence, random_weights, run_tool, write_drawn_dataset
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    _, noisy_json, images, clean, _, _ = write_drawn_dataset(str(root))
    mp = pytest.MonkeyPatch()
    patch_evidence(mp, clean)
    out = str(root / "check")
    argv = [
        "--config-file",
        CONFIG,
        "--json",
        noisy_json,
        "--image-root",
        images,
        "--output",
        out,
        "--weights",
        random_weights(str(root / "w.pth")),
    ]
    assert run_tool(argv) == 0
    mp.undo()
    return out, root


@pytest.fixture(scope="module")
def browser(check, tmp_path_factory):
    assert CHROMIUM and CHROMEDRIVER, "chromium and chromedriver are needed (tools/setup_env.sh installs them)"
    downloads = str(tmp_path_factory.mktemp("downloads"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": downloads, "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    yield driver, downloads
    driver.quit()


def _visible(driver):
    return [c for c in driver.find_elements(By.CSS_SELECTOR, ".card") if c.is_displayed()]


def test_page_renders_filters_and_its_saved_decisions_round_trip(check, browser):
    out, root = check
    driver, downloads = browser
    issues = json.load(open(os.path.join(out, "label_issues.json")))
    flagged = [x for x in issues if x["flagged"]]
    driver.get("file://" + os.path.join(out, "index.html"))
    cards = driver.find_elements(By.CSS_SELECTOR, ".card")
    assert [c.get_attribute("data-id") for c in cards] == [x["id"] for x in flagged]  # score order
    images = driver.find_elements(By.CSS_SELECTOR, ".card img")
    driver.execute_script("document.querySelectorAll('img').forEach(function(i){i.loading='eager';});")
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
    deadline = time.time() + 20
    while time.time() < deadline and not all(
        driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in images
    ):
        time.sleep(0.2)
    assert all(driver.execute_script("return arguments[0].naturalWidth", i) >= 240 for i in images)
    driver.save_screenshot(str(root / "page.png"))

    by_type = {}
    for x in flagged:
        by_type.setdefault(x["type"], []).append(x["id"])
    assert set(by_type) == {"location", "class", "missing", "spurious", "duplicate"}
    for kind, ids in by_type.items():
        driver.find_element(By.CSS_SELECTOR, f'.filters button[data-type="{kind}"]').click()
        assert [c.get_attribute("data-id") for c in _visible(driver)] == ids
        assert driver.find_element(By.ID, "shown").text == str(len(ids))
    # Accept every shown duplicate, then on "all" reject the first location card and accept the rest.
    driver.find_element(By.CSS_SELECTOR, '.filters button[data-type="duplicate"]').click()
    driver.find_element(By.ID, "accept-shown").click()
    driver.find_element(By.CSS_SELECTOR, '.filters button[data-type="all"]').click()
    assert len(_visible(driver)) == len(flagged)
    first_location = by_type["location"][0]
    card = driver.find_element(By.CSS_SELECTOR, f'.card[data-id="{first_location}"]')
    card.find_element(By.CSS_SELECTOR, 'input[value="reject"]').click()
    assert "reject" in card.get_attribute("class")
    for x in flagged:
        if x["id"] != first_location and x["type"] != "duplicate":
            driver.find_element(By.CSS_SELECTOR, f'.card[data-id="{x["id"]}"] input[value="accept"]').click()
    driver.find_element(By.ID, "save").click()
    deadline = time.time() + 20
    while time.time() < deadline and not glob.glob(os.path.join(downloads, "decisions.json")):
        time.sleep(0.2)
    saved = json.load(open(os.path.join(downloads, "decisions.json")))
    expected = {x["id"]: "accept" for x in flagged}
    expected[first_location] = "reject"
    assert saved["decisions"] == expected

    assert run_tool(["--apply", os.path.join(downloads, "decisions.json"), "--output", out]) == 0
    reviewed = json.load(open(os.path.join(out, "corrected_reviewed.json")))
    corrected = json.load(open(os.path.join(out, "corrected.json")))
    rejected = next(x for x in flagged if x["id"] == first_location)
    by_id = {a["id"]: a for a in reviewed["annotations"]}
    assert by_id[rejected["annotation_id"]]["bbox"] == rejected["bbox"]  # kept as annotated
    others = {a["id"]: a for a in corrected["annotations"] if a["id"] != rejected["annotation_id"]}
    assert {k: v for k, v in by_id.items() if k != rejected["annotation_id"]} == others


def test_page_reads_without_javascript(check):
    out, _ = check
    page = open(os.path.join(out, "index.html")).read()
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    flagged = [x for x in json.load(open(os.path.join(out, "label_issues.json"))) if x["flagged"]]
    positions = [page.index(f'data-id="{x["id"]}"') for x in flagged]
    assert positions == sorted(positions)  # cards in score order in the HTML itself
    assert 'id="controls" class="hidden"' in page  # the controls appear only with JavaScript
    assert any(x["type"] == "missing" for x in flagged) and "None" not in page  # no Python None on a card


def test_cards_are_shared_among_the_types_when_more_are_flagged_than_fit():
    # 300 class and 200 missing issues scored 0.9-0.99, 20 location issues scored 0.5-0.7: the
    # first 100 by score would all be class and missing; the page shows every location issue
    # and shares the rest evenly, each type's highest scores, in score order.
    from gfocal.label_check.review import pick_cards

    flagged = [{"id": f"class-{i}", "type": "class", "score": 0.99 - i * 1e-4} for i in range(300)]
    flagged += [{"id": f"missing-{i}", "type": "missing", "score": 0.95 - i * 1e-4} for i in range(200)]
    flagged += [{"id": f"location-{i}", "type": "location", "score": 0.7 - i * 1e-2} for i in range(20)]
    flagged.sort(key=lambda x: -x["score"])
    cards = pick_cards(flagged, 100)
    assert [x["id"] for x in cards] == [x["id"] for x in flagged if x in cards]  # score order
    for kind, count in (("class", 40), ("missing", 40), ("location", 20)):
        assert [x["id"] for x in cards if x["type"] == kind] == [f"{kind}-{i}" for i in range(count)]
    assert pick_cards(flagged[:50], 100) == flagged[:50]
