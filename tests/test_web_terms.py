"""`assoc serve` with combined queries and filters: the real server over a gallery of real photos with EXIF
dates (tests/dated_photos.py), asked by plain HTTP and driven by headless Chromium (skipped, saying why,
where Chromium is not installed)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from cli_support import SELF_SCORE, ok_json
from dated_photos import DOG, PHOTOS, PNG, make_library
from web_support import Server, get_json, request, wait

pytest.importorskip("starlette", reason="assoc serve needs the serve extra: pip install 'assoc[serve]'")
pytest.importorskip("uvicorn", reason="assoc serve needs the serve extra: pip install 'assoc[serve]'")

pytestmark = pytest.mark.slow  # starts a server and loads the model

COMBINED = "2:a dog + the woods - a beach"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("web-terms")
    library = make_library(root / "photos")
    assert ok_json("index", library, "--gallery", root / "gallery", "--device", "cpu")["photos"] == PHOTOS
    return root / "gallery", library


@pytest.fixture(scope="module")
def server(gallery: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Server:
    running = Server("--gallery", gallery[0], "--device", "cpu", cache=tmp_path_factory.mktemp("cache"))
    yield running
    running.stop()


def search(server: Server, params: list[tuple[str, str]] | dict) -> list[dict]:
    return get_json(f"{server.base}/api/search?{urlencode(params)}")


def cli(gallery: tuple[Path, Path], *args: str | Path) -> list[dict]:
    return ok_json("query", *args, "-k", "40", "--gallery", gallery[0], "--device", "cpu")


def without_ids(hits: list[dict]) -> list[dict]:
    return [{key: value for key, value in hit.items() if key != "id"} for hit in hits]


# ---------------------------------------------------------------------------------------------- HTTP


def test_the_api_takes_the_query_syntax_and_the_filters_as_the_cli_does(
    server: Server, gallery: tuple[Path, Path]
) -> None:
    library = gallery[1]
    assert without_ids(search(server, {"q": COMBINED})) == cli(gallery, COMBINED)
    filtered = [("q", "a dog"), ("in", str(library / "summer")), ("in", str(library / "winter")), ("type", "jpg")]
    filtered += [("since", "2019-07-14T00:00Z"), ("until", "2020-01-05T23:59:59Z")]
    found = search(server, filtered)
    expected = cli(gallery, "a dog", "--in", library / "summer", "--in", library / "winter", "--type", "jpg")
    dated = cli(gallery, "a dog", "--since", "2019-07-14T00:00Z", "--until", "2020-01-05T23:59:59Z")
    assert without_ids(found) == [hit for hit in expected if hit in dated] and len(found) == 5
    assert search(server, {"q": "a dog", "type": "png"})[0]["path"] == str(library / "winter" / PNG)
    for bad, fragment in (
        ({"q": "dog", "since": "soon"}, "is not a date"),
        ({"q": "dog", "since": "2021", "until": "2020"}, "is after until"),
        ({"q": "dog", "type": "docx"}, "not a kind of photo"),
        ({"q": "dog", "in": "photos/summer"}, "absolute folder"),
        ({"q": "dog +"}, "nothing follows"),
    ):
        status, headers, body = request(f"{server.base}/api/search?{urlencode(bad)}")
        assert status == 400 and headers["content-type"] == "application/json", (bad, status, body)
        assert fragment in json.loads(body)["error"] and "Traceback" not in body.decode()


def test_a_photo_and_words_are_one_combined_query(server: Server, gallery: tuple[Path, Path]) -> None:
    dog = next(h for h in search(server, {"q": "a dog", "k": 40}) if Path(h["path"]).name == DOG)
    both = search(server, {"like": dog["id"], "q": "- a dog"})
    assert without_ids(both) == cli(gallery, gallery[1] / "summer" / DOG, "-", "a dog")
    photo, words = next(h["terms"] for h in both if h["id"] == dog["id"])
    assert (photo["kind"], photo["score"], words["term"], words["weight"]) == (
        "photo",
        pytest.approx(SELF_SCORE, abs=2e-3),
        "a dog",
        -1.0,
    )
    uploaded = get_json(
        f"{server.base}/api/search?{urlencode({'q': '- a dog'})}", data=(gallery[1] / "summer" / DOG).read_bytes()
    )
    assert [h["id"] for h in uploaded][:1] == [dog["id"]] and uploaded[0]["terms"][0]["term"] == ""


# ---------------------------------------------------------------------------------------------- Chromium


def tiles(browser: object) -> list[object]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "#grid .tile")


def shown_ids(browser: object) -> list[str]:
    return [t.get_attribute("data-id") for t in tiles(browser)]


def address(browser: object) -> dict[str, list[str]]:
    return parse_qs(urlparse(browser.current_url).query)


def set_field(browser: object, field: str, value: str) -> None:
    """A filter control set as a person leaves it (the change event fires)."""
    browser.execute_script(
        "const field = document.getElementById(arguments[0]); field.value = arguments[1];"
        "field.dispatchEvent(new Event('change'));",
        field,
        value,
    )


def test_a_combined_query_and_the_filters_keep_to_the_address_bar(
    browser: object, server: Server, gallery: tuple[Path, Path]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    library = gallery[1]
    browser.get(server.base + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys(COMBINED, Keys.ENTER)
    expected = [h["id"] for h in search(server, {"q": COMBINED})]
    wait(browser, lambda b: shown_ids(b) == expected)
    assert address(browser)["q"] == [COMBINED]
    set_field(browser, "in", str(library / "summer"))
    set_field(browser, "since", "2019-07-15")
    filtered = [h["id"] for h in search(server, {"q": COMBINED, "in": str(library / "summer"), "since": "2019-07-15"})]
    assert 0 < len(filtered) < len(expected)
    wait(browser, lambda b: shown_ids(b) == filtered)
    assert address(browser) == {"q": [COMBINED], "in": [str(library / "summer")], "since": ["2019-07-15"]}
    browser.refresh()  # what the address bar holds is the search: the controls show it again
    wait(browser, lambda b: shown_ids(b) == filtered)
    assert browser.find_element(By.ID, "in").get_attribute("value") == str(library / "summer")
    assert browser.find_element(By.ID, "since").get_attribute("value") == "2019-07-15"
    assert browser.find_element(By.ID, "q").get_attribute("value") == COMBINED
    set_field(browser, "type", "png")  # no photo under summer/ is a PNG
    wait(browser, lambda b: b.find_element(By.ID, "message").text == "No photos matched.")


def test_the_viewer_shows_each_terms_score_and_a_words_terms_heatmap(browser: object, server: Server) -> None:
    from selenium.webdriver.common.by import By

    hits = search(server, {"q": COMBINED})
    browser.get(f"{server.base}/?{urlencode({'q': COMBINED})}")
    wait(browser, lambda b: len(tiles(b)) == len(hits))
    tiles(browser)[0].click()
    wait(browser, lambda b: "heatmap.png" in (b.find_element(By.ID, "frame").get_attribute("data-heat") or ""))
    chips = browser.find_elements(By.CSS_SELECTOR, "#terms .chip")
    assert [c.text.rsplit(" ", 1)[0] for c in chips] == ["+2:a dog", "+the woods", "\u2212a beach"]
    assert [c.text.rsplit(" ", 1)[1] for c in chips] == [f"{t['score']:.3f}" for t in hits[0]["terms"]]
    assert browser.find_element(By.ID, "phrase").get_attribute("value") == "a dog"  # the first plus term's words
    words = [c.text.split()[0] for c in browser.find_elements(By.CSS_SELECTOR, "#chips .chip")]
    assert words == ["all", "a", "dog"]
    chips[1].click()  # the woods: its own words and heatmap
    wait(browser, lambda b: "q=the+woods" in (b.find_element(By.ID, "frame").get_attribute("data-heat") or ""))
    assert [c.text.split()[0] for c in browser.find_elements(By.CSS_SELECTOR, "#chips .chip")] == [
        "all",
        "the",
        "woods",
    ]


def test_more_like_this_and_then_words_make_one_query(browser: object, server: Server) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    dog = next(h for h in search(server, {"q": "a dog", "k": 40}) if Path(h["path"]).name == DOG)
    browser.get(f"{server.base}/?{urlencode({'like': dog['id']})}")
    wait(browser, lambda b: len(tiles(b)) == PHOTOS and shown_ids(b)[0] == dog["id"])
    box = browser.find_element(By.ID, "q")
    box.send_keys("- a dog", Keys.ENTER)
    expected = [h["id"] for h in search(server, {"like": dog["id"], "q": "- a dog"})]
    wait(browser, lambda b: address(b) == {"like": [dog["id"]], "q": ["- a dog"]} and shown_ids(b) == expected)
    assert browser.find_element(By.ID, "query-photo-words").text == "with - a dog"
    browser.find_element(By.ID, "query-photo-clear").click()  # the words alone
    wait(browser, lambda b: address(b) == {"q": ["- a dog"]})
    wait(browser, lambda b: "a term to look for" in b.find_element(By.ID, "message").text)
