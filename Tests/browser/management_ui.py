"""A screenshot of the RabbitMQ management UI's queue list, filtered to one fleet prefix (docs/operations.md).

    python3 Tests/browser/management_ui.py --url http://127.0.0.1:15672 --user guest:guest \
        --filter recovery. --out docs/images/rabbitmq-queues.png
"""
import argparse
import sys
import time

from console_flow import browser, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--filter", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    name, password = args.user.split(":", 1)
    driver = browser()
    try:
        driver.set_window_size(1400, 1000)
        driver.get(args.url.rstrip("/") + "/")
        wait_for("the login form", lambda: driver.find_elements(By.NAME, "username"))
        driver.find_element(By.NAME, "username").send_keys(name)
        driver.find_element(By.NAME, "password").send_keys(password + Keys.ENTER)
        wait_for("the overview", lambda: driver.find_elements(By.CSS_SELECTOR, "input[value='Log out']"))
        driver.get(args.url.rstrip("/") + "/#/queues")
        wait_for("the queue list", lambda: driver.find_elements(By.CSS_SELECTOR, "table.list"))
        box = driver.find_element(By.ID, "queues-name")
        box.clear()
        box.send_keys(args.filter + Keys.ENTER)
        time.sleep(2)  # the list filters as one types
        wait_for("the fleet's queues", lambda: args.filter in driver.find_element(By.CSS_SELECTOR, "table.list").text)
        driver.save_screenshot(args.out)
        print(f"saved {args.out}")
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
