"""The installed package, as a user meets it: the console script from any directory, bundled files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _pimsim(tmp_path, *args):
    script = Path(sys.executable).with_name("pimsim")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "pimsim"]
    return subprocess.run(cmd + list(args), cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_console_script_runs_the_readme_job_from_any_directory(tmp_path):
    done = _pimsim(tmp_path, "trace", "run", "gemv-2048x1024-aim.csv", "--hw", "gddr6-aim.yaml", "--json", "-")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["commands"]["MACAB"] == 8192 and result["hardware"] == "gddr6-aim"


def test_console_script_reports_bad_input_without_a_traceback(tmp_path):
    done = _pimsim(tmp_path, "validate", "no-such-config.yaml")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "(bundled: " in done.stderr
    # the bundled list, whatever else is bundled beside these
    assert all(f"{name}.yaml" in done.stderr for name in ("ddr4-2400", "gddr6-aim", "hbm-pim"))


def test_every_subpackage_is_installed():
    """pyproject lists its packages by hand: pimsim.system and pimsim.serving were left out once, so a
    non-editable install (what .ci/run does) could not import them while an editable one could."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "pimsim").rglob("__init__.py")}
    assert found - listed == set(), f"add to pyproject's packages: {sorted(found - listed)}"
