"""The console in a real browser: Debian's headless Chromium, driven by Selenium.

Run by ConsoleBrowserTests (Tests/FleetWorkersTests/Console) against the console in front of the real
workers, broker, Redis and moto, with one target whose restart awaits approval. Checks what an operator
and a read-only viewer see and can do; exits 1 with the reason on the first thing that is wrong.
With --screenshots DIR it also saves the pages shown in docs/console.md.

    python3 Tests/browser/console_flow.py --url http://127.0.0.1:PORT --target NAME \
        --operator alice:PASSWORD --viewer bob:PASSWORD [--screenshots DIR]
"""
import argparse
import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def ok(message):
    print(f"PASS {message}", flush=True)


def wait_for(what, condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception as error:  # the page may be mid-update
            last = error
        time.sleep(0.2)
    fail(f"timed out waiting for {what}" + (f" ({last})" if last else ""))


def browser():
    options = Options()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def log_in(driver, base, account):
    name, password = account.split(":", 1)
    driver.get(base + "/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait_for(f"{name}'s fleet page", lambda: driver.find_elements(By.ID, "targets"))
    return name


def text(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--operator", required=True)
    parser.add_argument("--viewer", required=True)
    parser.add_argument("--screenshots")
    args = parser.parse_args()
    base, target = args.url.rstrip("/"), args.target
    shots = args.screenshots
    if shots:
        os.makedirs(shots, exist_ok=True)

    driver = browser()
    try:
        # An operator: the fleet page lists the broken target.
        operator = log_in(driver, base, args.operator)
        row = f"tr[data-target='{target}']"
        wait_for("the target's row", lambda: "awaiting_approval(restart)" in text(driver, row))
        ok(f"the fleet page lists {target} awaiting approval")
        if shots:
            driver.save_screenshot(os.path.join(shots, "console-fleet.png"))

        # Its page lists the incident; the incident's page shows the outage notice in its timeline.
        driver.find_element(By.CSS_SELECTOR, f"{row} a").click()
        wait_for("the incident's link", lambda: driver.find_elements(By.CSS_SELECTOR, "#incidents a"))
        driver.find_element(By.CSS_SELECTOR, "#incidents a").click()
        wait_for("the outage notice in the incident's timeline",
                 lambda: "Timeline of incident" in driver.page_source
                 and "outage_declared" in text(driver, "#timeline"))
        ok("the incident page shows the outage notice")
        if shots:
            driver.save_screenshot(os.path.join(shots, "console-incident.png"))
        watching = driver.current_window_handle
        page = driver.current_url

        # A forged POST from the same session, without the CSRF token: refused.
        status = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/brake', {method: 'POST', credentials: 'same-origin',"
            " headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'action=engage'})"
            ".then(r => done(r.status)).catch(e => done(String(e)));")
        if status != 403:
            fail(f"a POST without the CSRF token got {status}, not 403")
        ok("a forged POST without the CSRF token is refused (403)")

        # Approve from a second window; the first one, left alone, updates without a reload.
        driver.switch_to.new_window("window")
        driver.get(page)
        driver.find_element(By.ID, "button-approve").click()
        wait_for("the command's answer", lambda: driver.find_elements(By.ID, "answer-status"), timeout=90)
        answer = text(driver, "#answer")
        if text(driver, "#answer-status") != "accepted" or "restart succeeded" not in answer:
            fail(f"approve was not accepted and run: {answer}")
        ok(f"approve is accepted and the restart runs: {answer.splitlines()[-1].strip()}")
        driver.switch_to.window(watching)
        wait_for("the approval in the timeline, without a reload",
                 lambda: f"{operator} via" in text(driver, "#timeline"), timeout=60)
        ok(f"the timeline shows who approved ({operator} via the console's broker user), updated live")
        if shots:
            wait_for("the restart's outcome in the timeline",
                     lambda: "restart succeeded" in text(driver, "#timeline"), timeout=60)
            driver.save_screenshot(os.path.join(shots, "console-incident-approved.png"))

        # Log out; a person not on OPERATORS sees the pages and no button.
        driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
        wait_for("the login page", lambda: driver.find_elements(By.NAME, "password"))
        viewer = log_in(driver, base, args.viewer)
        driver.get(page)
        wait_for("the read-only page", lambda: "Read-only" in text(driver, "#actions"))
        if driver.find_elements(By.CSS_SELECTOR, "button[id^='button-']") or driver.find_elements(
                By.CSS_SELECTOR, "form[action='/brake']"):
            fail(f"{viewer} is not an operator but sees buttons")
        ok(f"{viewer}, not on OPERATORS, sees the page with no buttons")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
