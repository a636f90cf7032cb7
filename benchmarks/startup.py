"""Start-up benchmark: seconds from launching ``crystal-studio`` (the GUI) to the main window being on
screen and to its project being open.

Each run gets a fresh temporary HOME (data, settings and caches all inside it) and launches the app
twice with ``CRYSTAL_STUDIO_STARTUP_LOG`` set (see :mod:`crystal_studio.gui.app`: the app records
when it reached ``run_app``, showed the window and opened its project, then quits):

- ``first``: the first launch, which creates the built-in project (imports the shipped dataset and
  models) before the project is ready;
- ``next``: the second launch with the same HOME, which opens the existing built-in project.

``--method x11`` measures from outside instead, for builds that predate the log (a frozen build made
earlier): it polls the X server (``xwininfo``) until a window named "Crystal Studio" is viewable
(shown) and until it is renamed "Crystal Studio — builtin" (the built-in project open), then stops
the app.

The OS file cache is warm after the first run (cold caches would need dropping them system-wide);
the load average is printed, since other processes share the CPU. Prints one JSON line per launch
and one summary line (medians) per scenario.

Usage:  python benchmarks/startup.py [--exe PATH] [--runs 3] [--method log|x11]
        (needs a display: under xvfb-run -a -s "-screen 0 1280x1024x24"; --exe defaults to the
        ``crystal-studio`` of this Python's environment; give a frozen build's executable to measure it)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

TIMEOUT_S = 300


def emit(**fields) -> None:
    fields.setdefault("date", date.today().isoformat())
    fields.setdefault("machine", f"{platform.machine()} {os.cpu_count()} cores")
    print(json.dumps(fields), flush=True)


def fresh_env(home: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("CRYSTAL_STUDIO_HOME", None)
    return env


def _viewable(name: str) -> bool:
    out = subprocess.run(["xwininfo", "-name", name], capture_output=True, text=True).stdout
    return "IsViewable" in out


def launch_x11(exe: Path, home: Path) -> dict:
    """Launch the GUI once; times (from the launch) at which the X server saw its window and title."""
    start = time.time()
    proc = subprocess.Popen([str(exe)], env=fresh_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    times = {}
    try:
        for key, name in (("window_shown_s", "Crystal Studio"), ("project_ready_s", "Crystal Studio — builtin")):
            while not _viewable(name):
                if proc.poll() is not None:
                    raise SystemExit(f"{exe} exited {proc.returncode} before '{name}' appeared:\n"
                                     f"{proc.stderr.read()[-2000:]}")
                if time.time() - start > TIMEOUT_S:
                    raise SystemExit(f"{exe}: no window '{name}' after {TIMEOUT_S} s")
                time.sleep(0.02)
            times[key] = round(time.time() - start, 2)
    finally:
        proc.terminate()
        proc.wait(30)
    return times


def launch(exe: Path, home: Path) -> dict:
    """Launch the GUI once with ``home`` as HOME; the app's recorded times relative to the launch."""
    log = home / "startup.json"
    log.unlink(missing_ok=True)
    env = {**fresh_env(home), "CRYSTAL_STUDIO_STARTUP_LOG": str(log)}
    start = time.time()
    proc = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    exited = time.time()
    if not log.exists():
        raise SystemExit(f"{exe} exited {proc.returncode} without writing its start-up times:\n{proc.stderr[-2000:]}")
    times = json.loads(log.read_text(encoding="utf-8"))
    if "error" in times:
        raise SystemExit(f"{exe}: the project did not open: {times['error']}")
    return {"to_run_app_s": round(times["run_app"] - start, 2), "window_shown_s": round(times["shown"] - start, 2),
            "project_ready_s": round(times["ready"] - start, 2), "exit_s": round(exited - start, 2),
            "returncode": proc.returncode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exe", type=Path, default=Path(sys.executable).parent / "crystal-studio",
                        help="the crystal-studio executable (default: this environment's; or a frozen build's)")
    parser.add_argument("--runs", type=int, default=3, help="fresh homes to launch in (two launches each)")
    parser.add_argument("--method", choices=("log", "x11"), default="log",
                        help="log: the app records its times; x11: watch its window from outside (older builds)")
    args = parser.parse_args()
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SystemExit('no display: run under xvfb-run -a -s "-screen 0 1280x1024x24"')
    if not args.exe.is_file():
        raise SystemExit(f"{args.exe}: no such executable")
    exe = args.exe.resolve()
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    install = "frozen" if (exe.parent / "_internal").is_dir() else "source"
    results: dict[str, list[dict]] = {"first": [], "next": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="crystal-studio-startup-") as tmp:
            for scenario in ("first", "next"):
                load = round(os.getloadavg()[0], 2)
                result = (launch if args.method == "log" else launch_x11)(exe, Path(tmp))
                results[scenario].append(result)
                emit(benchmark="startup", install=install, method=args.method, exe=str(exe), version=version,
                     scenario=scenario, run=run, loadavg_1m=load, **result)
    for scenario, rows in results.items():
        emit(benchmark="startup_summary", install=install, method=args.method, exe=str(exe), version=version,
             scenario=scenario, runs=len(rows), loadavg_1m=round(os.getloadavg()[0], 2),
             **{f"median_{key}": round(statistics.median(r[key] for r in rows), 2)
                for key in ("to_run_app_s", "window_shown_s", "project_ready_s") if key in rows[0]})


if __name__ == "__main__":
    main()
