"""The console in a real browser (Debian's Chromium, driven by Playwright) on the real service:
a series' forecast chart, a threshold changed and seen applied by the service and audited."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shelfcast.embedded import free_port
from shelfcast.settings import Settings
from tests.support.events import history
from tests.support.tables import series_state
from tests.support.topics import forecast_keys
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def browser() -> Any:
    """Headless Chromium from Debian's package (Playwright's own download is not reachable)."""
    if not CHROMIUM.exists():
        pytest.fail("No /usr/bin/chromium: run ./scripts/setup (it installs Debian's chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def test_the_console_shows_a_forecast_chart_and_changes_a_threshold(
    service: Callable[..., Settings], produce: Callable[..., int], browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)  # plotly.js (4.8 MB) parses slowly on 2 busy cores

    from shelfcast.forecasts_view import plot_series
    from streaming.thresholds import ThresholdStore

    port = free_port()
    token = "browser-test-token-0123456789"
    settings = service(console_port=port, console_token=token)
    ThresholdStore(settings.data_dir).set({"cooldown_seconds": "3600"})  # retrains: forced only
    produce(settings, history("S1", "D", days=80) + history("S2", "E", days=60))
    assert sorted(forecast_keys(settings, expect=2, timeout=300)) == ["S1|D", "S2|E"]
    wait_for(
        lambda: {r["status"] for r in series_state(settings).values()} == {"done"}, 120, "done"
    )
    base = f"http://127.0.0.1:{port}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)

    # Pipeline health: lag per partition and the last micro-batches.
    page.goto(base + "/")
    expect(page.get_by_role("heading", name="Pipeline health")).to_be_visible()
    expect(page.locator("#lag tbody tr")).to_have_count(settings.topic_partitions)
    expect(page.locator("#batches tbody tr").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "console-health.png"), full_page=True)

    # The series table, searched, leads to the series page and its chart.
    page.get_by_role("link", name="Series").click()
    page.get_by_label("search series").fill("S1|")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#series tbody tr")).to_have_count(1)
    page.get_by_role("link", name="S1|D").click()
    chart = page.locator("#forecast-chart")
    expect(chart.locator(".main-svg").first).to_be_visible()
    traces = page.evaluate("document.getElementById('forecast-chart').data.map(t => t.name)")
    assert traces == ["interval", "actual", "forecast"]
    expect(chart).to_contain_text("S1|D: model v1")
    expect(page.locator("#models tbody tr")).to_have_count(1)

    # A threshold changed in the browser: validated, audited, and applied by the service
    # (a forced series is retrained at once, then taken out of force).
    page.get_by_role("link", name="Thresholds").click()
    page.get_by_label("Token").fill(token)  # changes need it, on loopback too
    page.locator("#t-cooldown_seconds").fill("-5")
    page.get_by_role("button", name="Apply changes").click()
    expect(page.locator("#message")).to_contain_text("Refused, nothing changed")
    page.reload()
    page.get_by_label("Token").fill(token)
    page.locator("#t-force").fill("S1|D")
    page.get_by_role("button", name="Apply changes").click()
    by_console = page.locator("#audit tbody tr", has_text="console 127.0.0.1")
    expect(by_console).to_contain_text("force")
    expect(by_console).to_contain_text('["S1|D"]')
    wait_for(lambda: series_state(settings)["S1|D"]["model_version"] == "2", 300, "model v2")
    wait_for(lambda: ThresholdStore(settings.data_dir).load().force == (), 30, "force cleared")
    page.reload()
    expect(page.locator("#t-force")).to_have_value("")
    expect(page.locator("#audit tbody tr")).to_have_count(3)  # cooldown; force set, cleared
    expect(page.locator("#audit tbody tr").first).to_contain_text("shelfcast-service")

    page.goto(base + "/queue")
    expect(page.locator("#handoffs tbody tr", has_text="S2|E")).to_have_count(1)  # first wave
    expect(page.locator("#handoffs tbody tr", has_text="S1|D")).to_have_count(2)  # and forced
    expect(page.locator("#latest tbody tr")).to_have_count(3)

    page.goto(base + "/series/S1%7CD")
    expect(chart).to_contain_text("S1|D: model v2")
    expect(page.locator("#models tbody tr")).to_have_count(2)
    shot = tmp_path / "console-series.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # The README's picture (docs/console.png) is this file, copied by hand when the page
    # changes: the test writes nothing into the source tree.
    print(f"console screenshot: {shot}")

    # `shelfcast forecasts --plot` draws the same chart (one figure builder).
    title = page.evaluate("document.getElementById('forecast-chart').layout.title.text")
    html = plot_series(settings, "S1|D", tmp_path / "chart.html").read_text()
    assert title in html and "model v2" in title
