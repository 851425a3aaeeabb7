"""The web view in a real browser: Debian's headless Chromium driven by selenium, against a real
`lth serve` (API and one CPU worker, SQLite and the embedded broker) training tiny experiments.

Screenshots of each page go to tests/artifacts/web/ (ignored by git). Tests run in file order
on one server: the open-mode ones first, then API keys are created, which closes the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "tests" / "artifacts" / "web"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)

pytestmark = pytest.mark.timeout(240)

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):  # pragma: no cover
    if os.environ.get("CI"):
        raise RuntimeError("CI needs chromium and chromium-driver (make setup installs them)")
    pytest.skip("chromium/chromium-driver not installed (make setup)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402


def spec(name: str, *, seed: int = 0, iterations: int = 200, levels: int = 1, **extra: Any) -> dict:
    return {
        "name": name,
        "model": "lenet_300_100",
        "dataset": {
            "name": "synthetic",
            "validation_size": 200,
            "synthetic": {"train_size": 1000, "test_size": 200},
        },
        "training": {"iterations": iterations, "eval_every": 20},
        "pruning": {"levels": levels},
        "seed": seed,
        **extra,
    }


def wait_for(check: Callable[[], Any], timeout: float = 90, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LTH_")}
        self.env.update(
            PYTHONPATH=str(ROOT),
            CUDA_VISIBLE_DEVICES="",
            OMP_NUM_THREADS="1",
            LTH_DATA_DIR=str(tmp / "data"),
        )
        self.log = (tmp / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(self.port), "--gpus", "none"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        wait_for(lambda: self.http.get("/healthz").status_code == 200, 60, "lth serve")

    def submit(self, body: dict, key: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.http.post("/experiments", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def get(self, experiment_id: str, key: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self.http.get(f"/experiments/{experiment_id}", headers=headers).json()

    def create_key(self, owner: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "keys", "create", "--owner", owner],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("web"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="lth-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver: Any, name: str) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height + 40, 800), 3200))
    time.sleep(0.3)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def text(driver: Any, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def status_of(driver: Any) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#status .badge").get_attribute("data-status")


def data_points(driver: Any, css: str) -> int:
    """The evaluations a curve card holds (its ``data-points``)."""
    return int(driver.find_element(By.CSS_SELECTOR, css).get_attribute("data-points") or 0)


def points(driver: Any, figure: str) -> int:
    """Data points Vega drew into the figure's SVG (symbol marks)."""
    return driver.execute_script(
        "return document.querySelectorAll(arguments[0]).length",
        f"#fig-{figure} svg .mark-symbol path",
    )


# ------------------------------------------------------------------------ open mode


def test_list_then_live_progress_figures_and_downloads(server, browser, downloads) -> None:
    first = server.submit(spec("tiny-seed0", tags=["web", "seeds"]))
    second = server.submit(spec("tiny-seed1", seed=1, tags=["web", "seeds"]))
    browser.get(f"{server.url}/")
    row = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{first}"]'))
    assert "tiny-seed0" in row.text and "web" in row.text
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{second}"]')

    browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{first}"] a.name').click()
    wait_for(lambda: text(browser, "#exp-name") == "tiny-seed0")
    browser.execute_script("window.__sameDocument = true")
    seen: list[str] = []

    def moved_and_done() -> bool:
        # Status first: a render between the two reads then shows in the progress read, so
        # the last progress seen is the one on the page that says "succeeded".
        done = status_of(browser) == "succeeded"
        progress = text(browser, '#progress [data-role="progress-text"]')
        if not seen or seen[-1] != progress:
            seen.append(progress)
        return done

    wait_for(moved_and_done, 150, "the experiment to finish on its page")
    assert browser.execute_script("return window.__sameDocument") is True  # never reloaded
    assert len(seen) >= 3, seen  # the bar moved through iterations and levels
    assert any(" it " in s for s in seen), seen
    assert seen[-1].startswith("2/2 levels")
    # The level table and the three figures, with a point per level and run.
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#levels tbody tr")) == 2)
    # The star only on a pruned ticket; with none, "no winning ticket" and why (issue 27).
    body = server.get(first)
    has_ticket = body["ticket"] is not None
    stars = browser.find_elements(By.CSS_SELECTOR, "#levels tr.ticket .star")
    assert bool(stars) == has_ticket
    assert not browser.find_elements(By.CSS_SELECTOR, '#levels tr.ticket[data-level="0"]')
    verdict = text(browser, '#levels tr[data-level="1"] td.verdict')
    assert verdict.split(" ")[0] == body["ticket_decision"]["levels"][1]["verdict"]
    assert ("no winning ticket" in text(browser, "#summary")) == (not has_ticket)
    # "Why this level", visible below the table: the decision's reason, or "no winning ticket"
    # and why, then each pruned level's verdict, interval and first reason (issue 25).
    decision = body["ticket_decision"]
    why = wait_for(lambda: text(browser, "#why"), 10, "the why section")
    lead = text(browser, '#why [data-role="why-lead"]')
    assert decision["reason"].removeprefix("no winning ticket: ") in lead
    assert lead.lower().count("no winning ticket") <= 1, lead
    assert (
        lead.startswith(f"Level {body['ticket']['level']} (")
        if has_ticket
        else (lead.startswith("No winning ticket: "))
    )
    level1 = decision["levels"][1]
    line = text(browser, '#why li[data-level="1"]')
    assert line.startswith("level 1 (") and f": {level1['verdict']}" in line, line
    interval = (level1["comparisons"].get("matches_dense_accuracy") or {}).get("interval")
    assert ("pts" in line) == bool(interval and None not in interval), line
    deciding = [r for r in level1["reasons"] if r.startswith(f"{level1['verdict']}:")]
    assert (deciding or level1["reasons"])[0] in line, line
    assert "{" not in why
    for name, at_least in (
        ("early_stop_iteration", 3),
        ("early_stop_accuracy", 3),
        ("accuracy_curves", 20),
    ):
        wait_for(lambda n=name, k=at_least: points(browser, n) >= k, 30, f"points in {name}")
    # Validation and loss curves of every finished level's ticket (11 evaluations each).
    wait_for(lambda: data_points(browser, "#finished-curves") >= 22, 30, "finished curves")
    assert browser.find_elements(By.CSS_SELECTOR, "#finished-curves svg")
    # The cost in words, never JSON.
    cost = text(browser, "#cost")
    assert "so far" in cost and "over 2 levels" in cost and "{" not in cost, cost
    shot(browser, "experiment")

    downloads_asked = [("#download-csv", f"{first}-levels.csv")]
    if has_ticket:
        downloads_asked.append(("#download-ticket", f"{first}-ticket.safetensors"))
    else:
        assert not browser.find_element(By.CSS_SELECTOR, "#download-ticket").is_enabled()
    for button, filename in downloads_asked:
        browser.find_element(By.CSS_SELECTOR, button).click()
        wait_for(lambda f=filename: (downloads / f).is_file(), 30, filename)
    csv_text = (downloads / f"{first}-levels.csv").read_text()
    assert csv_text.splitlines()[0].startswith("level,kind,ticket,weights_remaining")
    assert len(csv_text.splitlines()) == 1 + 1 + 2  # header, level 0, level 1 with its control
    from safetensors.torch import load_file

    if has_ticket:
        ticket = wait_for(lambda: load_file(str(downloads / f"{first}-ticket.safetensors")))
        assert any(k.startswith("mask/") for k in ticket)
        assert any(k.startswith("init/") for k in ticket)

    # The list now shows both finished, then a comparison of the two seeds as mean ± std.
    wait_for(lambda: server.get(second)["status"] == "succeeded", 120, "the second seed")
    browser.get(f"{server.url}/#/?tag=seeds")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#experiments tr[data-id]")) == 2)
    wait_for(lambda: "succeeded" in text(browser, f'tr[data-id="{second}"]'))
    shot(browser, "list")
    browser.get(f"{server.url}/#/compare?tag=seeds")
    wait_for(lambda: "tiny · seeds 0, 1 (n=2)" in text(browser, "#compare-groups"))
    # Each member's own ticket (or "no winning ticket"), so seeds that disagree are seen.
    for member in (first, second):
        own = server.get(member)
        row = text(browser, f'#compare-members tr[data-id="{member}"]')
        assert member[:8] in row, row
        if own["ticket"] is None:
            assert "no winning ticket" in row, row
        else:
            t = own["ticket"]
            assert f"{100 * t['early_stop_val_accuracy']:.2f}%" in row, row
            assert f"{100 * t['early_stop_test_accuracy']:.2f}%" in row and t["verdict"] in row
        # The picker tells same-named rows apart: short id and creation time.
        pick = text(browser, f'#compare-pick tr:has(input[value="{member}"])')
        assert member[:8] in pick and own["created_at"][:4] in pick, pick
    wait_for(lambda: points(browser, "early_stop_accuracy") >= 3, 30, "compare figure")
    assert "bands: mean ± std" in text(browser, "#fig-early_stop_accuracy")
    shot(browser, "compare")


def test_cancel_from_the_page(server, browser) -> None:
    long = server.submit(spec("long-one", iterations=200_000))
    browser.get(f"{server.url}/#/experiments/{long}")
    # Before anything is measured the cost is an estimate from the model's size, in words.
    cost = wait_for(lambda: text(browser, "#cost"), 30, "the cost")
    assert "still to go" in cost and "3 runs, 600,000 iterations" in cost, cost
    assert "estimated from lenet_300_100's size" in cost and "{" not in cost, cost
    wait_for(lambda: status_of(browser) == "running", 90, "the long experiment to start")
    # The level training now gets a live curve from the evaluations its progress carries.
    wait_for(lambda: data_points(browser, "#live-curve") >= 2, 90, "a live curve")
    assert browser.find_elements(By.CSS_SELECTOR, "#live-curve svg")
    shot(browser, "live-curve")
    browser.find_element(By.CSS_SELECTOR, "#cancel").click()
    alert = wait_for(lambda: browser.switch_to.alert, 10, "the confirmation")
    assert "Cancel experiment long-one" in alert.text
    alert.accept()
    wait_for(lambda: status_of(browser) == "cancelled", 60, "cancelled on the page")
    assert server.get(long)["status"] == "cancelled"
    assert browser.find_element(By.CSS_SELECTOR, "#cancel").get_attribute("disabled")


def test_hostile_name_is_shown_as_text(server, browser) -> None:
    hostile = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    experiment_id = server.submit(spec(hostile, levels=0, iterations=40))
    server.http.post(f"/experiments/{experiment_id}/cancel")  # nothing to train
    browser.get(f"{server.url}/")
    link = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{experiment_id}"] a.name')
    )
    assert link.text == hostile
    browser.get(f"{server.url}/#/experiments/{experiment_id}")
    wait_for(lambda: text(browser, "#exp-name") == hostile)
    assert hostile.replace('"', '\\"') in text(browser, "#spec")
    assert browser.execute_script("return window.__pwned === undefined") is True
    assert not browser.find_elements(By.CSS_SELECTOR, "#main img")


# ------------------------------------------------------------------------ with API keys


def test_with_keys_nothing_shows_until_a_key_and_owners_are_isolated(server, browser) -> None:
    alice, bob = server.create_key("alice"), server.create_key("bob")
    theirs = server.submit(spec("bobs-secret", levels=0, iterations=40), key=bob)
    mine = server.submit(spec("alices-run", levels=0, iterations=40), key=alice)
    browser.get(f"{server.url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#key-form"))
    page = text(browser, "#main")
    assert "needs a key" in page
    assert not browser.find_elements(By.CSS_SELECTOR, "#experiments")
    assert "tiny-seed0" not in page and "bobs-secret" not in page
    shot(browser, "login")

    browser.find_element(By.CSS_SELECTOR, "#api-key").send_keys(alice)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-id="{mine}"]'))
    rows = browser.find_elements(By.CSS_SELECTOR, "#experiments tr[data-id]")
    assert [r.get_attribute("data-id") for r in rows] == [mine]  # not bob's, not open-mode ones
    assert alice not in browser.current_url
    browser.get(f"{server.url}/#/experiments/{theirs}")
    wait_for(lambda: "no experiment with id" in text(browser, "#main .error"))
    assert "bobs-secret" not in text(browser, "#main")
    # A wrong key is refused and forgotten; the page asks again.
    browser.execute_script("sessionStorage.setItem('lth.apiKey', 'lth_wrong')")
    browser.get(f"{server.url}/")
    wait_for(lambda: "not valid" in text(browser, "#key-form"))
    for experiment_id, key in ((theirs, bob), (mine, alice)):
        server.http.post(
            f"/experiments/{experiment_id}/cancel", headers={"Authorization": f"Bearer {key}"}
        )
    logs = " ".join(e.get("message", "") for e in browser.get_log("browser"))
    assert alice not in logs and bob not in logs
