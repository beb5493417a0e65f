"""Browser tests: Debian's Chromium, driven by Playwright, against the hub on pytest-django's live server (127.0.0.1).

No browser is downloaded: Playwright launches /usr/bin/chromium (`.ci/run` installs Debian's `chromium` when it is
missing). Screenshots land in var/artifacts/browser/ (gitignored), one per step worth seeing.
"""
from __future__ import annotations

import os
from io import StringIO
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio loop in the test's thread; Django refuses ORM calls there unless told the
# calls are the test's own (they are: setting up rows and reading results between browser steps).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "browser"
PASSWORD = "pw-browser-test-1"


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def staff_users(transactional_db):
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("staff_groups", stdout=StringIO())
    users = {}
    for username, group in (("operator", "Billing operators"), ("accountant", "Accountants"),
                            ("billadmin", "Billing admins")):
        user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        users[username] = user
    return users


class Staff:
    """One staff member's browser tab on the live hub."""

    def __init__(self, page, base_url: str, name: str, test_name: str):
        self.page, self.base_url, self.name, self.test_name = page, base_url, name, test_name
        self.shots = 0

    def login(self) -> None:
        self.page.goto(f"{self.base_url}/admin/login/?next=/admin/")
        self.page.fill("input[name=username]", self.name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(f"{self.base_url}/admin/")

    def open(self, path: str):
        return self.page.goto(f"{self.base_url}{path}")

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        path = ARTIFACTS / f"{self.test_name}-{self.shots:02d}-{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def submit(self, selector: str) -> None:
        """Click a button that posts a form, and wait until the page it leads to has loaded: `click` alone returns
        once the navigation has started, and reading the page then can find it half there (seen under load)."""
        with self.page.expect_navigation():
            self.page.click(selector)

    def run_action(self, changelist: str, pk: int, action: str) -> None:
        self.open(changelist)
        self.page.check(f"input[name=_selected_action][value='{pk}']")
        self.page.select_option("select[name=action]", action)
        self.submit("button[name=index]")


@pytest.fixture
def staff_tab(chromium, live_server, staff_users, request):
    contexts = []

    def open_tab(name: str) -> Staff:
        context = chromium.new_context(viewport={"width": 1440, "height": 900})
        contexts.append(context)
        tab = Staff(context.new_page(), live_server.url, name, request.node.name)
        tab.login()
        return tab

    yield open_tab
    for context in contexts:
        context.close()
