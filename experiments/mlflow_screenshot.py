"""The README's MLflow screenshots, taken from a real server with headless Chromium.

Starts ``mlflow server`` on loopback with a fresh SQLite store in a temporary folder, trains
CartPole (seed 7, 100k frames) into it, and photographs the run's Overview (source, git
commit, tags, description) and its Model metrics tab (one section per metric prefix). MLflow's
assistant panel on the right is cropped off. Needs Debian's ``chromium`` package:

    python experiments/mlflow_screenshot.py            # writes docs/mlflow-run-*.png
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PORT = 5077
WIDTH, MAIN_WIDTH = 1800, 1340  # the window, and where MLflow's assistant panel begins in it


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"error: {url} did not answer in {seconds:.0f} s")


def shoot(url: str, out: Path, height: int, profile: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("error: no chromium on PATH (Debian: apt-get install chromium)")
    raw = out.with_suffix(".full.png")
    subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}", "--virtual-time-budget=60000",
         f"--screenshot={raw}", url],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    Image.open(raw).crop((0, 0, MAIN_WIDTH, height)).save(out, optimize=True)
    raw.unlink()
    print(f"{out.relative_to(ROOT)}: {url}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="mlflow-shot-"))
    uri = f"http://127.0.0.1:{PORT}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(PORT),
         "--backend-store-uri", f"sqlite:///{work}/store.db", "--default-artifact-root", str(work / "art")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(uri + "/health")
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
        subprocess.run(
            [sys.executable, "-m", "ppo_torchrl.train", "--seed", "7", "--frames", "100000",
             "--no-stop-when-solved", "--checkpoint-dir", str(work / "ck"),
             "--summary-json", str(work / "s.json")],
            check=True, cwd=ROOT, env=env,
        )  # fmt: skip
        run_id = json.loads((work / "s.json").read_text())["run_id"]
        # MLflow 3.17's UI opens in its GenAI view unless asked for model training.
        page = f"{uri}/#/experiments/1/runs/{run_id}"
        (ROOT / "docs").mkdir(exist_ok=True)
        shots = [("overview", "", 1250), ("metrics", "/model-metrics", 1700)]
        # Twice: the first pass fills the browser's cache (charts load lazily; cold, they may
        # not be drawn in time for the screenshot).
        for _ in range(2):
            for name, tab, height in shots:
                out = ROOT / f"docs/mlflow-run-{name}.png"
                shoot(f"{page}{tab}?workflowType=machine_learning", out, height, work / "profile")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
