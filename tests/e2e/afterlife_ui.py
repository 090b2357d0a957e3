"""The Airflow UI of a rolled-back deployment in a real browser: Debian's chromium, headless, driven by playwright.

Run by afterlife.py under the `api` venv: ``python afterlife_ui.py CONFIG.json OUT.json``. Logs in through the
SimpleAuthManager form, opens each page of CONFIG["pages"], waits until the page has settled, keeps a screenshot
and records the page's text, every HTTP response of status >= 400 and every console error / uncaught page error.
It judges nothing: the tests compare the text with the states the scheduler recorded.
"""
from __future__ import annotations

import json
import sys
import time

from playwright.sync_api import sync_playwright


def main(cfg_path: str, out_path: str) -> None:
    cfg = json.load(open(cfg_path))
    base = cfg["base_url"]
    out: dict = {"pages": [], "login": None}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=cfg["chromium"], headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = ctx.new_page()
        current: dict = {}

        def on_response(r):
            if r.status >= 400:
                current.setdefault("bad_responses", []).append({"url": r.url, "status": r.status,
                                                                "method": r.request.method})
            if "/api/v2/" in r.url or "/ui/" in r.url:
                current.setdefault("xhr", []).append({"url": r.url, "status": r.status})

        page.on("response", on_response)
        page.on("console", lambda m: m.type == "error" and current.setdefault("console_errors", []).append(m.text))
        page.on("pageerror", lambda e: current.setdefault("page_errors", []).append(str(e)))
        page.on("requestfailed", lambda r: current.setdefault("failed_requests", []).append(
            {"url": r.url, "failure": r.failure}))

        # Log in through the form a user sees (SimpleAuthManager).
        current = {"name": "login"}
        page.goto(f"{base}/", wait_until="load", timeout=90_000)
        user = page.locator("input[name=username], input#username").first
        user.wait_for(timeout=60_000)
        current["login_url"] = page.url
        user.fill(cfg["username"])
        page.locator("input[type=password]").first.fill(cfg["password"])
        page.locator("button[type=submit]").first.click()
        page.wait_for_url(lambda u: "/auth/login" not in u, timeout=90_000)
        page.wait_for_load_state("load", timeout=90_000)
        current["after_login_url"] = page.url
        out["login"] = current

        for spec in cfg["pages"]:
            current = {"name": spec["name"], "url": f"{base}{spec['path']}"}
            # not "networkidle": the page of a running DAG run polls for ever
            page.goto(current["url"], wait_until="load", timeout=90_000)
            for text in spec.get("wait_for_text", []):
                try:
                    page.get_by_text(text, exact=False).first.wait_for(timeout=30_000)
                except Exception as e:  # recorded: the test says which text never appeared
                    current.setdefault("waits_timed_out", []).append(f"{text}: {type(e).__name__}")
            time.sleep(3)  # late XHRs and the first auto-refresh
            current["final_url"] = page.url
            current["title"] = page.title()
            current["text"] = page.inner_text("body")
            shot = f"{cfg['screenshots']}/{spec['name']}.png"
            page.screenshot(path=shot, full_page=True)
            current["screenshot"] = shot
            out["pages"].append(current)
        browser.close()
    json.dump(out, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:3])
