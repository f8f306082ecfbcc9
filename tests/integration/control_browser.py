#!/usr/bin/env python3
"""Drives the status page in a real headless Chromium over the DevTools protocol (the
--remote-debugging-pipe transport: NUL-terminated JSON on fds 3/4, so no websocket library is
needed). Waits until the page shows delivered > 0 and a row for DOMAIN, types the token, clicks
that row's "suspend" button with real mouse events, saves a screenshot. Exit 3 when chromium is
not installed (the test skips), 1 on any failure (reason on stderr).

  control_browser.py URL DOMAIN TOKEN SCREENSHOT.png
"""
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

url, domain, token, shot = sys.argv[1:5]
chromium = shutil.which("chromium") or shutil.which("chromium-browser")
if chromium is None:
    print("chromium is not installed (MXB_SETUP_CHROMIUM=1 tools/setup.sh)", file=sys.stderr)
    sys.exit(3)

to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()
profile = tempfile.mkdtemp(prefix="mxb-chromium-")


def child_fds():
    # Chromium reads commands on fd 3 and writes on fd 4. Move both ends above 4 first, so
    # neither dup2 overwrites the other.
    a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
    b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
    os.dup2(a, 3)
    os.dup2(b, 4)


args = [chromium, "--headless=new", "--remote-debugging-pipe", "--no-first-run",
        "--disable-gpu", "--disable-extensions", "--window-size=1200,900",
        f"--user-data-dir={profile}", "about:blank"]
if os.geteuid() == 0:
    args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
proc = subprocess.Popen(args, preexec_fn=child_fds, close_fds=False,
                        stdout=subprocess.DEVNULL, stderr=open(shot + ".chromium.log", "w"))
os.close(to_chrome_r)
os.close(from_chrome_w)
reader = os.fdopen(from_chrome_r, "rb")
buf = b""
next_id = 0


def send(method, params=None, session=None):
    global next_id, buf
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    while True:
        while b"\0" not in buf:
            chunk = os.read(from_chrome_r, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})


def fail(why):
    print(why, file=sys.stderr)
    proc.kill()
    sys.exit(1)


try:
    target = send("Target.createTarget", {"url": url})["targetId"]
    session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def js(expr):
        r = send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session)
        return r.get("result", {}).get("value")

    row = f'document.querySelector(\'tr[data-domain="{domain}"]\')'
    deadline = time.time() + 60
    while time.time() < deadline:
        ready = js(f'document.body.dataset.ready === "1" && '
                   f'Number(document.getElementById("delivered").textContent) > 0 && '
                   f'{row} !== null')
        if ready:
            break
        time.sleep(0.2)
    else:
        fail("the page never showed delivered > 0 and a row for " + domain + ": " +
             str(js("document.body.innerText")))

    js('document.getElementById("token").focus()')
    send("Input.insertText", {"text": token}, session)
    rect = js(f'(() => {{ const r = {row}.querySelector("button.suspend")'
              f'.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()')
    if not rect:
        fail("no suspend button for " + domain)
    for kind in ("mousePressed", "mouseReleased"):
        send("Input.dispatchMouseEvent", {"type": kind, "x": rect[0], "y": rect[1],
                                          "button": "left", "clickCount": 1}, session)
    # The page refreshes 300 ms after a command; wait until the row says so.
    deadline = time.time() + 20
    while time.time() < deadline:
        if js(f'{row} !== null && {row}.className === "suspended"'):
            break
        time.sleep(0.2)
    else:
        fail("the row never turned suspended: " + str(js("document.body.innerText")))
    png = send("Page.captureScreenshot", {"format": "png"}, session)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png))
    print(js("document.body.innerText"))
finally:
    try:
        send("Browser.close")
    except Exception:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)
