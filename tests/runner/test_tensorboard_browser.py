"""A real run's TensorBoard, seen in headless Chromium: the scalars and images tabs show dwx's tags.

TensorBoard runs on 127.0.0.1; Chromium (Debian's ``chromium``) loads each tab and is driven over the DevTools
protocol through ``--remote-debugging-pipe`` (JSON messages on fds 3 and 4, no websocket client needed). The
check reads the page's text after the app ran, shadow roots included (the dashboards are Polymer elements), asks
that each tag's card has drawn its chart line or image, and writes screenshots of both tabs to the test's tmp
folder and, when ``DWX_SCREENSHOT_DIR`` is set, there too (to look at them).
Without Chromium the test skips, except under ``CI`` (CI installs it, see .ci/run), where it fails.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_tool, run_dwx

SCALAR_TAGS = ("metric/rel_err", "metric/speed", "loss/pixels", "loss/total")
IMAGE_TAGS = ("frames/target|estimate", "video/target|estimate")
# The page's text, shadow DOM included, and the tags whose card has drawn its data: a chart line (a scalar card,
# tf-scalar-card) or a loaded image (tf-image-loader); a card is the nearest element with a `tag` property.
PAGE_STATE_JS = r"""(() => {
  const texts = [];
  const drawn = new Set();
  const walk = (node, tag) => {
    if (node.nodeType === Node.TEXT_NODE) { texts.push(node.textContent); return; }
    if (node.nodeName === 'STYLE' || node.nodeName === 'SCRIPT') return;
    if (typeof node.tag === 'string') tag = node.tag;
    const line = node.nodeName === 'path' && node.classList.contains('line') && node.getAttribute('d');
    const image = node.nodeName === 'IMG' && node.naturalWidth > 0;
    if (tag && (line || image)) drawn.add(tag);
    if (node.shadowRoot) walk(node.shadowRoot, tag);
    for (const child of node.childNodes) walk(child, tag);
  };
  walk(document, null);
  return {text: texts.join(' ').replace(/\s+/g, ' '), drawn: [...drawn]};
})()"""


def _chromium() -> str:
    """The Chromium binary. Without one: skip with the reason, or fail under CI, which installs it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing_tool("chromium not found: apt-get install -y chromium (Debian's package; .ci/run installs it)")
    return path


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_read(url: str, server: subprocess.Popen, plugins: tuple[str, ...], timeout: float = 60) -> None:
    """Poll TensorBoard until it answers HTTP and has data for ``plugins`` (it reads the event files after it starts;
    a dashboard loaded before that would show no tags until its next reload)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"tensorboard exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=5) as reply:
                listing = json.load(reply)
            if all(listing.get(plugin, {}).get("enabled") for plugin in plugins):
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"tensorboard at {url} had no data for {plugins} within {timeout:.0f} s")


class DevTools:
    """Chromium driven over the DevTools protocol on ``--remote-debugging-pipe``: it reads commands from fd 3
    and writes replies and events to fd 4, each a JSON message ended by a NUL byte."""

    def __init__(self, chromium: str, profile: Path, log: Path):
        commands_r, self._commands = os.pipe()
        self._replies, replies_w = os.pipe()

        def onto_fds_3_and_4():
            # via fds >= 10 first: a plain dup2 could overwrite the other pipe's end if it is fd 3 or 4
            high_r = fcntl.fcntl(commands_r, fcntl.F_DUPFD_CLOEXEC, 10)
            high_w = fcntl.fcntl(replies_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1400", "--no-first-run"]
        with open(log, "wb") as err:
            self.process = subprocess.Popen(
                [chromium, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                preexec_fn=onto_fds_3_and_4,
                close_fds=False,  # fds 3 and 4 are made in the child; Python's own fds are not inheritable
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        os.close(commands_r)
        os.close(replies_w)
        self.log = log
        self._buffer = b""
        self._last_id = 0

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        """Send one command (to the page of ``session``, if given) and return its result."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_message(deadline, method)
            if reply.get("id") == self._last_id:  # events and other replies are of no interest here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _next_message(self, deadline: float, method: str) -> dict:
        """The next message from Chromium, waiting for it at most until ``deadline``."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method} (its log: {self.log})")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium quit during {method} (exit {self.process.poll()}; its log: {self.log})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> str:
        """Open ``url`` in a new tab and return the session that talks to it."""
        target = self.send("Target.createTarget", url=url)["targetId"]
        return self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def page_state(self, session: str) -> dict:
        """The page's text (shadow DOM included) and the tags whose card has drawn its data (PAGE_STATE_JS)."""
        result = self.send("Runtime.evaluate", session, expression=PAGE_STATE_JS, returnByValue=True)
        return result["result"].get("value") or {"text": "", "drawn": []}  # no value: the page is still loading

    def screenshot(self, session: str, path: Path) -> None:
        """A PNG of what the page shows now."""
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", session, format="png")["data"]))

    def close(self) -> None:
        """Ask Chromium to quit; kill it if it does not."""
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._replies)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path, asked for first by the fixtures below: no run is made for a test that skips."""
    return _chromium()


@pytest.fixture(scope="module")
def tensorboard_url(chromium, tmp_path_factory) -> Iterator[str]:
    """TensorBoard on 127.0.0.1 serving a fresh 10-step physical_params run (scalars every step, images)."""
    run_dir = tmp_path_factory.mktemp("tb_browser") / "run"
    run = ["experiment=physics_tiny", "loop.steps=10", "loop.eval_every=10", "loop.image_every=10", "threads=1"]
    out = run_dwx("run", *run, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-3000:]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ["--logdir", str(run_dir / "tb"), "--host", "127.0.0.1", "--port", str(port), "--load_fast=false"]
    cmd = [sys.executable, "-m", "tensorboard.main", *serve]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_read(url, server, plugins=("scalars", "images"))
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory) -> Iterator[DevTools]:
    """One headless Chromium for the module, with its own profile folder and log file."""
    folder = tmp_path_factory.mktemp("chromium")
    devtools = DevTools(chromium, folder / "profile", folder / "chromium.log")
    try:
        yield devtools
    finally:
        devtools.close()


def _missing(state: dict, tags: tuple[str, ...]) -> dict[str, list[str]]:
    """The tags a page state lacks: in its text, and among the cards that have drawn their data."""
    return {
        "not in the text": [tag for tag in tags if tag not in state["text"]],
        "not drawn": [tag for tag in tags if tag not in state["drawn"]],
    }


def _wait_for(browser: DevTools, session: str, tags: tuple[str, ...], timeout: float = 30) -> dict:
    """The page's state once it shows and has drawn every tag, or when ``timeout`` is over."""
    deadline = time.monotonic() + timeout
    state = browser.page_state(session)
    while any(_missing(state, tags).values()) and time.monotonic() < deadline:
        time.sleep(0.25)
        state = browser.page_state(session)
    return state


def _keep_screenshot(browser: DevTools, session: str, path: Path) -> None:
    """Write a screenshot to ``path`` and, when ``DWX_SCREENSHOT_DIR`` is set, a copy there."""
    browser.screenshot(session, path)
    print(f"screenshot: {path}")
    if os.environ.get("DWX_SCREENSHOT_DIR"):
        keep = Path(os.environ["DWX_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        print(f"screenshot: {shutil.copy(path, keep / path.name)}")


def _check_tab(browser: DevTools, url: str, tags: tuple[str, ...], screenshot: Path) -> None:
    """Open ``url``, wait until it shows ``tags``, keep a screenshot, and assert that every tag is shown and drawn."""
    session = browser.open(url)
    state = _wait_for(browser, session, tags)
    _keep_screenshot(browser, session, screenshot)
    missing = {why: found for why, found in _missing(state, tags).items() if found}
    assert not missing, f"{url}: {missing}; drawn: {state['drawn']}; the page reads: {state['text'][-1500:]}"


@pytest.mark.slow
def test_scalars_tab_shows_dwx_loss_and_metric_tags(tensorboard_url, browser, tmp_path):
    # the tag filter lists the matching cards in one open pane (by default only the first panes are open)
    url = f"{tensorboard_url}/#scalars&tagFilter=%5E(metric%7Closs)%2F"
    _check_tab(browser, url, SCALAR_TAGS, tmp_path / "tensorboard_scalars.png")


@pytest.mark.slow
def test_images_tab_shows_dwx_frames_and_video_strip(tensorboard_url, browser, tmp_path):
    _check_tab(browser, f"{tensorboard_url}/#images", IMAGE_TAGS, tmp_path / "tensorboard_images.png")
