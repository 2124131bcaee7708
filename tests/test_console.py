"""The web console in a real headless Chromium, against a real server with a real history:
every view, filter, graph, the log follow and each action, with the token off and on."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from browser import Browser
from console_history import served
from helpers import push, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from knitfab.store.jobs import load_job

pytestmark = pytest.mark.slow
ZONE = "Asia/Tokyo"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    with served(tmp_path_factory.mktemp("console") / "server") as history:
        yield history


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    b = Browser(downloads, ZONE)
    yield b
    b.close()


@pytest.fixture
def go(browser, history):
    def go(fragment: str):
        url = f"{history.api.url}/#{fragment}"
        if browser.driver.current_url == url:
            browser.driver.refresh()  # a get of the same URL and fragment is no navigation: nothing re-renders
        else:
            browser.driver.get(url)
        return browser

    yield go
    assert browser.errors() == []


def ids(browser) -> list[str]:
    return browser.ids("table.list tbody tr[data-id]")


def shows(browser, expected: set[str]) -> list[str]:
    """Wait for the list to show exactly ``expected`` (ids)."""
    return browser.wait(lambda d: set(ids(browser)) == expected and (ids(browser) or ["(none)"]))


def knit_ids(history, **params) -> set[str]:
    return {d["knitId"] for d in history.api.json("GET", "/api/data/", params=params)}


def run_ids(history, **params) -> set[str]:
    return {r["runId"] for r in history.api.json("GET", "/api/runs/", params=params)}


def press(browser, name: str, within: str = "main"):
    browser.wait(lambda d: browser.find(f"{within} [name='{name}']").click() or True)


def confirm(browser, expected_words: str):
    dialog = browser.find("dialog[open]")
    assert expected_words in dialog.text, dialog.text
    press(browser, "confirm", "dialog[open]")
    browser.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog[open]"))


def refused(browser, button: str, expected_words: str):
    press(browser, button)
    dialog = browser.find("dialog[open]")
    assert "Knitfab does not allow this" in dialog.text and expected_words in dialog.text, dialog.text
    assert not browser.all("dialog[open] [name='confirm']")
    press(browser, "close", "dialog[open]")


def fresh_chain(history) -> dict:
    """Push a new dataset: train makes a model (done), evaluate fails on it, serve hangs on it."""
    dataset = history.api.push({"d.csv": "1"}, "type:dataset")["knitId"]

    def runs():
        made = history.api.json("GET", "/api/runs/", params={"knitIdInput": dataset})
        model = made and made[0]["status"] == "done" and made[0]["outputs"][0]["knitId"]
        using = model and {
            r["plan"]["image"]: r for r in history.api.json("GET", "/api/runs/", params={"knitIdInput": model})
        }
        ready = using and using.get("example.com/evaluate:v1", {}).get("status") == "failed"
        return ready and using.get("example.com/serve:v1", {}).get("status") == "running" and (made[0], model, using)

    train, model, using = wait_for(runs)
    return {
        "dataset": dataset,
        "train": train,
        "model": model,
        "failed": using["example.com/evaluate:v1"],
        "running": using["example.com/serve:v1"],
    }


# -- the lists ---------------------------------------------------------------------------------------


def test_the_data_list_shows_every_data_newest_first(go, history):
    b = go("/data")
    shown = shows(b, knit_ids(history))
    whole = history.api.json("GET", "/api/data/")
    assert shown == [d["knitId"] for d in reversed(whole)]
    row = b.find(f"tr[data-id='{history.data['dataset']}']")
    assert "project:mnist" in row.text and "type:dataset" in row.text and "knit#uploaded" in row.text
    assert row.find_element(By.CSS_SELECTOR, ".status.s-done").text == "done"
    assert b.find(f"tr[data-id='{history.data['running-log']}'] .status.s-running")
    b.shot("data")


def test_times_are_in_the_viewers_zone_with_utc_on_hover(go, history):
    b = go("/data")
    stamp = b.find(f"tr[data-id='{history.data['dataset']}'] time")
    utc = datetime.fromisoformat(stamp.get_attribute("datetime"))
    assert stamp.text == utc.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    assert stamp.get_attribute("title") == utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z (UTC)"


def test_ids_are_short_with_a_copy_button(go, history):
    b = go("/data")
    box = b.find(f"tr[data-id='{history.data['dataset']}'] .idbox")
    assert box.find_element(By.CSS_SELECTOR, "a").text == history.data["dataset"][:8] + "…"
    button = box.find_element(By.CSS_SELECTOR, "button.copy")
    assert button.get_attribute("data-copy") == history.data["dataset"]
    button.click()
    b.wait(lambda d: button.text == "copied")


def test_data_filters_by_tags_and_time(go, history):
    b = go("/data")
    b.find("details.filters summary").click()
    b.find("[name='tag-new']").send_keys("type:log", Keys.ENTER)
    b.find("[name='tag-new']").send_keys("nocolon")
    press(b, "apply")
    assert "a tag is KEY:VALUE" in b.text("details.filters")
    b.find("[name='tag-new']").clear()
    press(b, "apply")
    shows(b, knit_ids(history, tag="type:log"))
    assert "tag=type%3Alog" in b.driver.current_url
    press(b, "clear")
    shows(b, knit_ids(history))
    future = "2999-01-01T00:00:00.000Z"
    b = go(f"/data?since={future}")
    b.wait(lambda d: "Nothing matches" in b.text("table.list"))
    b = go("/data?since=2000-01-01T00:00:00.000Z&duration=1h")
    b.wait(lambda d: "Nothing matches" in b.text("table.list"))
    b = go("/data")
    b.find("details.filters summary").click()
    assert b.find("[name='duration']").get_attribute("disabled") is not None  # only with since
    b.driver.execute_script(
        "const i = document.querySelector('[name=since]'); i.value = '2000-01-01T00:00:00';"
        " i.dispatchEvent(new Event('input'))"
    )
    b.find("[name='duration']").send_keys("300000h")
    press(b, "apply")
    shows(b, knit_ids(history))
    assert "duration=300000h" in b.driver.current_url


def test_plans_list_and_filters(go, history):
    b = go("/plans")
    shows(b, {p["planId"] for p in history.api.json("GET", "/api/plans/")})
    b.shot("plans")
    b = go("/plans?image=example.com/train:v1")
    shows(b, {history.plans["train"]})
    b = go("/plans")
    b.find("details.filters summary").click()
    b.find("[name='in_tag-new']").send_keys("type:model")
    press(b, "apply")
    shows(b, {history.plans["evaluate"], history.plans["serve"]})
    b = go("/plans?out_tag=type:report")
    shows(b, {history.plans["evaluate"]})
    b = go("/plans")
    b.find("details.filters summary").click()
    b.find("select[name='active']").send_keys("Inactive")
    press(b, "apply")
    shows(b, {p["planId"] for p in history.api.json("GET", "/api/plans/", params={"active": "false"})})
    assert "active=false" in b.driver.current_url


def test_runs_list_and_filters(go, history):
    b = go("/runs")
    shows(b, run_ids(history))
    row = b.find(f"tr[data-id='{history.runs['failed']}']")
    assert "exit 3" in row.text and row.find_element(By.CSS_SELECTOR, ".s-failed")
    assert b.find(f"tr[data-id='{history.runs['deleted']}'] .s-invalidated")
    b.shot("runs")
    b.find("details.filters summary").click()
    b.find("[name='plan']").send_keys(history.plans["train"])
    press(b, "apply")
    shows(b, run_ids(history, plan=history.plans["train"]))
    b = go(f"/runs?knitIdInput={history.data['model']}")
    shows(b, {history.runs["failed"], history.runs["running"]})
    b = go(f"/runs?knitIdOutput={history.data['model']}")
    shows(b, {history.runs["done"]})
    b = go("/runs")
    b.find("details.filters summary").click()
    for status in ("failed", "running"):
        b.find(f"input[name='status'][value='{status}']").click()
    press(b, "apply")
    shows(b, run_ids(history, status="failed,running"))
    b = go("/runs?since=2999-01-01T00:00:00Z&duration=1h")
    b.wait(lambda d: "Nothing matches" in b.text("table.list"))


def test_lists_refresh_and_auto_refresh(go, history):
    b = go("/data")
    shows(b, knit_ids(history))
    history.api.push({"n": "1"}, "kind:refresh")
    press(b, "refresh")
    shows(b, knit_ids(history))
    b = go("/runs")
    shows(b, run_ids(history))
    b.find("input[name='auto']").click()
    history.api.push({"n": "2"}, "kind:scratch")  # a new scratch run
    wait_for(lambda: len(run_ids(history)) > len(ids(b)))
    shows_new = b.wait(lambda d: set(ids(b)) == run_ids(history), timeout=12)  # Auto (5s), no click
    assert shows_new


def test_a_list_of_more_than_a_page_has_pages(go, history, browser):
    for _ in range(101 - len(knit_ids(history))):
        push(history.server.store, "kind:bulk")
    b = go("/data")
    whole = [d["knitId"] for d in reversed(history.api.json("GET", "/api/data/"))]
    b.wait(lambda d: ids(b) == whole[:100])
    b.find("a.page").click()
    b.wait(lambda d: ids(b) == whole[100:])
    assert "page=1" in b.driver.current_url


# -- details ----------------------------------------------------------------------------------------


def test_data_details(go, history):
    b = go(f"/data/{history.data['model']}")
    b.wait(lambda d: "Nominations" in b.text())
    text = b.text()
    assert "type:model" in text and "/out/model" in text and "example.com/train:v1" in text
    downstream = b.text("section:nth-of-type(3)")
    assert history.runs["failed"][:8] in downstream and history.runs["running"][:8] in downstream
    assert "/in/model" in downstream
    nominations = b.text("section:nth-of-type(4)")
    assert "example.com/evaluate:v1" in nominations and "example.com/serve:v1" in nominations
    b.shot("data-detail")


def test_plan_details(go, history):
    b = go(f"/plans/{history.plans['train']}")
    b.wait(lambda d: "Service account" in b.text())
    text = b.text()
    for words in ['["python","main.py"]', '["succeed"]', "cpu=1", "memory=1Gi", "gpu=yes", "zone=a", "os=linux",
                  "trainer", "team=vision", "/in/dataset", "type:dataset", "/out/model", "type:model", "type:log",
                  "example.com/evaluate:v1", "example.com/serve:v1"]:  # fmt: skip
        assert words in text, words
    assert "On node (may)\ngpu=yes" in text and "On node (must)\nos=linux" in text
    b.shot("plan-detail")
    b = go(f"/plans/{history.plans['evaluate']}")
    b.wait(lambda d: "from" in b.text("section:nth-of-type(2)") and "example.com/train:v1" in b.text())


def test_run_details(go, history):
    b = go(f"/runs/{history.runs['failed']}")
    b.wait(lambda d: "Updated at" in b.text())
    text = b.text()
    assert "failed" in text and "3 (container main) Error" in text and "/in/model" in text and "/out/report" in text
    run = history.api.json("GET", f"/api/runs/{history.runs['failed']}")
    assert run["log"]["knitId"][:8] in b.text("section:nth-of-type(4)")
    assert b.find("main time").get_attribute("datetime") == run["updatedAt"]
    b.shot("run-detail")


# -- graphs -----------------------------------------------------------------------------------------


def graph_nodes(b) -> set[str]:
    return set(b.ids(".canvas g.node.clickable"))


def test_lineage_of_a_data_is_the_whole_connected_graph(go, history):
    b = go(f"/lineage/data/{history.data['dataset']}")
    b.wait(lambda d: history.runs["running"] in graph_nodes(b))
    assert {history.runs["done"], history.runs["failed"], history.data["model"]} <= graph_nodes(b)
    assert history.data["scratch"] not in graph_nodes(b)
    b.find(f"g.node[data-id='{history.runs['failed']}']").click()
    panel = b.find("aside.panel")
    b.wait(lambda d: "(container main) Error" in panel.text)
    b.shot("lineage")
    b.find("aside.panel [name='close-panel']").click()
    b.wait(lambda d: not panel.is_displayed())
    b.find(f"g.node[data-id='{history.data['model']}']").click()
    b.wait(lambda d: "Nominations" in b.find("aside.panel").text)
    b.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    b.wait(lambda d: not b.find("aside.panel").is_displayed())


def test_lineage_depth_and_everything_made_from_a_data(go, history):
    b = go(f"/lineage/data/{history.data['model']}")
    b.wait(lambda d: history.data["dataset"] in graph_nodes(b))
    b.find("select[name='up']").send_keys("0 steps")
    b.find("select[name='down']").send_keys("1 steps")
    press(b, "depth")
    b.wait(lambda d: "up=0&down=1" in d.current_url and history.runs["failed"] in graph_nodes(b))
    assert history.runs["done"] not in graph_nodes(b)
    press(b, "made-from")
    b.wait(lambda d: "up=0&down=all" in d.current_url and history.runs["running"] in graph_nodes(b))
    assert history.data["dataset"] not in graph_nodes(b) and history.runs["done"] not in graph_nodes(b)


def test_lineage_of_a_run_and_the_plan_graph(go, history):
    b = go(f"/lineage/run/{history.runs['failed']}")
    b.wait(lambda d: {history.runs["done"], history.data["dataset"]} <= graph_nodes(b))
    b = go(f"/plangraph/{history.plans['train']}")
    b.wait(lambda d: {history.plans["train"], history.plans["evaluate"], history.plans["serve"]} <= graph_nodes(b))
    b.find(f"g.node[data-id='{history.plans['serve']}']").click()
    b.wait(
        lambda d: (
            "example.com/serve:v1" in b.find("aside.panel").text and "Service account" in b.find("aside.panel").text
        )
    )
    b.shot("plan-graph")
    b = go(f"/plangraph/{history.plans['train']}?up=0&down=0")
    b.wait(lambda d: graph_nodes(b) == {history.plans["train"]})


# -- the log ----------------------------------------------------------------------------------------


def test_the_log_follows_a_running_run_and_shows_a_finished_one_whole(go, history):
    chain = fresh_chain(history)
    run = chain["running"]
    log = history.server.store.layout.staging(run["log"]["knitId"]) / "log"
    log.write_text("epoch 1\n")
    b = go(f"/runs/{run['runId']}/log")
    b.wait(lambda d: "epoch 1" in b.text("pre.log") and "Following" in b.text("#log-state"))
    with open(log, "a") as f:
        f.write("epoch 2\n")
    b.wait(lambda d: "epoch 1\nepoch 2" in b.text("pre.log"))
    b.shot("log")
    history.server.runner.finish(load_job(history.server.store, run["runId"]), 0)
    b.wait(lambda d: "The whole log" in b.text("#log-state"), timeout=15)
    assert b.text("pre.log") == f"epoch 1\nepoch 2\nrun {run['runId']} exits 0"
    b = go(f"/runs/{history.runs['failed']}/log")
    b.wait(lambda d: b.text("pre.log") == f"run {history.runs['failed']} exits 3")


# -- actions ----------------------------------------------------------------------------------------


def test_add_and_remove_a_tag(go, history):
    knit_id = history.data["dataset"]
    b = go(f"/data/{knit_id}")
    b.find("[name='new-tag']").send_keys("knit#id:x")
    press(b, "add-tag")
    assert "system tags" in b.find("dialog[open]").text
    press(b, "close", "dialog[open]")
    b.find("[name='new-tag']").clear()
    b.find("[name='new-tag']").send_keys("stage:gold")
    press(b, "add-tag")
    confirm(b, "gets the tag stage:gold")
    wait_for(lambda: "stage:gold" in history.api.json("GET", "/api/data/", params={"tag": "stage:gold"})[0]["tags"])
    b.wait(lambda d: "stage:gold" in b.text("section"))
    b.find("button.x[title='remove stage:gold']").click()
    confirm(b, "loses the tag stage:gold")
    wait_for(lambda: not history.api.json("GET", "/api/data/", params={"tag": "stage:gold"}))


def test_download_a_data(go, history, downloads):
    b = go(f"/data/{history.data['dataset']}")
    press(b, "download")
    target = downloads / f"{history.data['dataset']}.tar.gz"
    wait_for(lambda: target.exists() and target.stat().st_size > 0)
    import tarfile

    with tarfile.open(target) as tar:
        assert tar.extractfile("train.csv").read() == b"a,b\n1,2\n"


def test_stop_a_run_by_abort_and_by_tear_off(go, history):
    chain = fresh_chain(history)
    b = go(f"/runs/{chain['running']['runId']}")
    b.wait(lambda d: "running" in b.text("h2"))
    refused(b, "retry", "only a done or failed run can be retried; this one is running")
    refused(b, "delete", "this one is running")
    press(b, "tearoff")
    confirm(b, "counts as successful")
    wait_for(lambda: history.api.json("GET", f"/api/runs/{chain['running']['runId']}")["status"] == "done")
    b = go(f"/runs/{chain['running']['runId']}")  # reloaded: the page showed the run as the PUT left it
    b.wait(lambda d: "done" in b.text("h2"))
    refused(b, "abort", "this one is done")
    second = fresh_chain(history)
    b = go(f"/runs/{second['running']['runId']}")
    b.wait(lambda d: "running" in b.text("h2"))
    press(b, "abort")
    confirm(b, "aborted by user")
    run = wait_for(
        lambda: (r := history.api.json("GET", f"/api/runs/{second['running']['runId']}"))["status"] == "failed" and r
    )
    assert run["exit"] == {"code": 253, "message": "aborted by user"}


def test_retry_and_delete(go, history):
    chain = fresh_chain(history)
    b = go(f"/runs/{chain['train']['runId']}")
    b.wait(lambda d: "done" in b.text("h2"))
    refused(b, "retry", "its outputs are inputs of runs")
    refused(b, "delete", "Delete those runs first")
    failed = chain["failed"]
    b = go(f"/runs/{failed['runId']}")
    b.wait(lambda d: "failed" in b.text("h2"))
    press(b, "retry")
    confirm(b, "runs again")
    wait_for(lambda: history.api.json("GET", f"/api/runs/{failed['runId']}")["outputs"] != failed["outputs"])
    b = go(f"/runs/{history.run_of('scratch', 'done')['runId']}")
    b.wait(lambda d: "done" in b.text("h2"))
    run_id = b.find("h2 .idbox button.copy").get_attribute("data-copy")
    press(b, "delete")
    confirm(b, 'stays as "invalidated"')
    wait_for(lambda: history.api.json("GET", f"/api/runs/{run_id}")["status"] == "invalidated")
    b.wait(lambda d: d.current_url.endswith("#/runs"))
    upload = history.api.push({"x": "y"}, "kind:upload")
    b = go(f"/runs/{upload['upstream']['run']['runId']}")
    b.wait(lambda d: "done" in b.text("h2"))
    refused(b, "retry", "root run")


def test_activate_deactivate_and_resources(go, history):
    plan_id = history.plans["scratch"]
    b = go(f"/plans/{plan_id}")
    press(b, "deactivate")
    confirm(b, "becomes inactive")
    wait_for(lambda: not history.api.json("GET", f"/api/plans/{plan_id}")["active"])
    press(b, "activate")
    confirm(b, "becomes active")
    wait_for(lambda: history.api.json("GET", f"/api/plans/{plan_id}")["active"])
    b.wait(lambda d: b.all("main [name='deactivate']"))
    press(b, "resources")
    row = b.all("dialog[open] .resource")[-1]
    row.find_element(By.NAME, "type").send_keys("cpu")
    row.find_element(By.NAME, "quantity").send_keys("500m")
    confirm(b, "start from now on")
    wait_for(lambda: history.api.json("GET", f"/api/plans/{plan_id}").get("resources", {}).get("cpu") == "500m")
    b.wait(lambda d: "cpu=500m" in b.text())
    press(b, "resources")
    b.find("dialog[open] .resource [name='quantity']").clear()
    confirm(b, "An empty quantity removes")
    wait_for(lambda: "cpu" not in history.api.json("GET", f"/api/plans/{plan_id}").get("resources", {}))
    pseudo = history.api.json("GET", f"/api/data/?tag=knit%23id:{history.data['dataset']}")[0]["upstream"]["run"]
    b = go(f"/plans/{pseudo['plan']['planId']}")
    refused(b, "deactivate", "pseudo plan")


def test_refused_by_the_server_is_shown(go, history):
    chain = fresh_chain(history)
    b = go(f"/runs/{chain['failed']['runId']}")
    b.wait(lambda d: "failed" in b.text("h2"))
    history.api.call("DELETE", f"/api/runs/{chain['failed']['runId']}")  # someone else was quicker
    press(b, "delete")
    press(b, "confirm", "dialog[open]")
    b.wait(lambda d: "Knitfab refused:" in b.text("dialog[open]") and "not found" in b.text("dialog[open]"))
    press(b, "cancel", "dialog[open]")


# -- the token --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with served(tmp_path_factory.mktemp("guarded") / "server", token="t0ken-for-tests", tls=True) as history:
        yield history


def test_behind_tls_and_a_token_the_console_signs_in(browser, guarded, downloads):
    b = browser
    assert guarded.api.url.startswith("https://")
    b.driver.get(f"{guarded.api.url}/#/data")
    b.find("form.signin")
    b.shot("signin")
    b.find("[name='token']").send_keys("wrong", Keys.ENTER)
    b.wait(lambda d: "That token was refused" in b.text())
    b.find("[name='token']").send_keys("t0ken-for-tests", Keys.ENTER)
    shows(b, {d["knitId"] for d in guarded.api.json("GET", "/api/data/")})
    b.driver.get(f"{guarded.api.url}/#/lineage/data/{guarded.data['dataset']}")
    b.wait(lambda d: guarded.runs["running"] in graph_nodes(b))
    b.driver.get(f"{guarded.api.url}/#/runs/{guarded.runs['done']}/log")
    b.wait(lambda d: "exits 0" in b.text("pre.log"))
    b.driver.get(f"{guarded.api.url}/#/data/{guarded.data['scratch']}")
    press(b, "download")
    wait_for(lambda: (downloads / f"{guarded.data['scratch']}.tar.gz").exists())
    b.find("[name='new-tag']").send_keys("signed:in")
    press(b, "add-tag")
    confirm(b, "gets the tag signed:in")
    wait_for(lambda: guarded.api.json("GET", "/api/data/", params={"tag": "signed:in"}))
    b.find("#signout").click()
    b.find("form.signin")
    assert b.errors() == [] or all("401" in e for e in b.errors())
