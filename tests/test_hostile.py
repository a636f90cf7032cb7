"""Regression tests for the reliability defects of issue 20, found by hostile testing: each hostile
input is built here in ``tmp_path`` and must give a clear message naming the file or field, the
right exit code (2 nothing done, 3 partial) and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crystal_studio.core.io import ImportOptions, read_structures
from crystal_studio.design.spec import SpecError, load_spec
from tests.conftest import GOOD

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")


def cli(*args, timeout=120):
    """Run the command line as a user does; never a traceback."""
    result = subprocess.run([sys.executable, "-m", "crystal_studio", *map(str, args)], capture_output=True,
                            text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr
    return result


# ------------------------------------------------------------------ item 1: non-regular input files


@posix_only
def test_fifo_and_devices_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)
    paths = [fifo] + [Path(p) for p in ("/dev/zero", "/dev/null") if Path(p).exists()]
    records, issues = read_structures(paths)
    assert not records
    assert [i.source for i in issues] == [str(p) for p in paths]
    assert "not a regular file (a FIFO)" in issues[0].reason
    assert all("not a regular file (a character device)" in i.reason for i in issues[1:])


@posix_only
def test_fifo_spec_is_refused(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    with pytest.raises(SpecError, match=r"spec\.json: not a regular file \(a FIFO\)"):
        load_spec(fifo)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_stated_size_of_zero_does_not_bypass_the_limit():
    # /proc files state size 0 but have content: reading stops at the limit + 1 byte
    _, issues = read_structures(["/proc/self/status"], ImportOptions(max_file_bytes=16))
    assert issues[0].reason == "file is over the 0 MiB limit"


@posix_only
def test_cli_import_of_a_fifo_exits_2_at_once(tmp_path):
    project = tmp_path / "p.sqlite"
    assert cli("new", project).returncode == 0
    fifo = tmp_path / "pipe.cif"
    os.mkfifo(fifo)
    result = cli("import", project, fifo, "--dataset", "d", timeout=60)
    assert result.returncode == 2
    assert f"{fifo}: not a regular file (a FIFO)" in result.stderr
    partial = cli("import", project, fifo, GOOD / "SrTiO3.cif", "--dataset", "d", "--json", timeout=60)
    assert partial.returncode == 3
    assert json.loads(partial.stdout)["imported"] == 1
