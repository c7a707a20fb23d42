"""The CLI starts without torch: `artgen --help` and the remote commands never import it (nor
FastAPI); only a command that runs on this machine does (the local_* modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter (this test process has torch loaded already): each invocation's
# exit code and output, and whether torch / FastAPI were imported once it returned.
PROBE = """
import json, sys
from typer.testing import CliRunner
import artgen.cli

runs = {"import": {"torch": "torch" in sys.modules, "fastapi": "fastapi" in sys.modules}}
for name, args in json.loads(sys.argv[1]).items():
    result = CliRunner().invoke(artgen.cli.app, args)
    runs[name] = {
        "exit_code": result.exit_code,
        "output": result.output,
        "exception": repr(result.exception) if result.exit_code not in (0, 1, 2) else None,
        "torch": "torch" in sys.modules,
        "fastapi": "fastapi" in sys.modules,
    }
print(json.dumps(runs))
"""

# Port 9 (discard) on localhost: nothing listens, so a remote command fails to connect.
NO_SERVER = "http://127.0.0.1:9"


def run_probe(commands: dict[str, list[str]], cwd: Path) -> dict[str, dict[str, object]]:
    """Invoke each command in one fresh interpreter (model cache in cwd); what PROBE reports."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ARTGEN_")}
    env["ARTGEN_HOME"] = str(cwd / "home")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_help_and_remote_commands_do_not_import_torch(tmp_path: Path) -> None:
    commands = {
        "help": ["--help"],
        "jobs help": ["jobs", "--help"],
        "generate help": ["generate", "--help"],
        "animate help": ["animate", "--help"],
        "models help": ["models", "--help"],
        "jobs list": ["jobs", "list", "--server", NO_SERVER],
        "generate remote": ["generate", "a castle", "--server", NO_SERVER],
    }
    runs = run_probe(commands, tmp_path)
    for name, run in runs.items():
        assert run["torch"] is False, f"{name} imported torch"
        assert run["fastapi"] is False, f"{name} imported fastapi"
    for name in ("help", "jobs help", "generate help", "animate help", "models help"):
        assert runs[name]["exit_code"] == 0, runs[name]
    assert "generate" in str(runs["help"]["output"]) and "--server" in str(
        runs["generate help"]["output"]
    )
    for name in ("jobs list", "generate remote"):
        run = runs[name]
        assert run["exit_code"] == 1 and run["exception"] is None, run
        assert f"cannot reach {NO_SERVER}" in str(run["output"])
    assert not (tmp_path / "output.png").exists()


def test_a_local_command_still_loads_torch(tmp_path: Path) -> None:
    # The boundary is where the local body is imported: a local run does get torch.
    runs = run_probe({"models list": ["models", "list"]}, tmp_path)
    assert runs["models list"]["exit_code"] == 0, runs["models list"]
    assert "tiny" in str(runs["models list"]["output"])
    assert runs["models list"]["torch"] is True
