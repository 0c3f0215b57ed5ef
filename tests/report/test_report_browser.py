"""The day's page in a real browser: headless Chromium (Debian's `chromium`) opens a copy
of the page the daily run of the marked day committed, with a small script added that
writes each picture's natural size and each section's height into the page after load;
the DOM is read back with --dump-dom, and a screenshot is taken. No network: the page
needs none, and Chromium's host resolver is told to find nothing.

`make test` installs Chromium when it is missing (the Makefile's `browser` target); a
missing browser fails the test, naming the command that installs it."""

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.helpers.jobs import RUN_DATE
from transforms.publishing.files import SUCCESS
from transforms.report.page import SECTIONS
from transforms.report.publish import report_dir

pytestmark = pytest.mark.jobs

PROBE = """<script>
window.addEventListener("load", function () {
  var found = {images: [], sections: []};
  document.querySelectorAll("img").forEach(function (img) {
    found.images.push([img.id, img.complete, img.naturalWidth, img.naturalHeight]);
  });
  document.querySelectorAll("section").forEach(function (s) {
    found.sections.push([s.id, s.offsetHeight]);
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `make browser` (or apt-get install chromium) "
                "installs it; `make test` does so before the tests")


def run_browser(binary: str, page: str, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
         "--window-size=1200,3000", *flags, f"file://{page}"],
        capture_output=True, text=True, timeout=60)


def test_the_page_renders_every_section_and_image_in_chromium(marked_daily_run, tmp_path):
    binary = chromium()
    final_dir = report_dir(marked_daily_run[2], RUN_DATE)
    with open(os.path.join(final_dir, SUCCESS)) as handle:
        run_id = handle.read().strip()
    with open(os.path.join(final_dir, f"page-{run_id}.html"), encoding="utf-8") as handle:
        page = handle.read()
    probed = str(tmp_path / "page.html")
    with open(probed, "w", encoding="utf-8") as handle:
        handle.write(page.replace("</body>", PROBE + "</body>"))
    dumped = run_browser(binary, probed, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout, re.S)
    assert found, dumped.stdout[-3000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert [s[0] for s in probe["sections"]] == [s for s, _ in SECTIONS]
    assert all(height > 0 for _, height in probe["sections"])
    assert len(probe["images"]) >= 6
    for name, complete, width, height in probe["images"]:
        assert complete and width > 100 and height > 100, (name, width, height)
    shot = tmp_path / "page.png"
    taken = run_browser(binary, probed, f"--screenshot={shot}")
    assert taken.returncode == 0, taken.stderr[-3000:]
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 20_000
