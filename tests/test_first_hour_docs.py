"""The demo's options and the README's curl sessions (issue 25): what a new user copies must
work once an API key exists, and the demo must say how to go on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.sh"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "eighty"], "error: the port must be a number, got 'eighty'"),
        (["--port=8x"], "error: the port must be a number, got '8x'"),
        (["--colour"], "usage: scripts/demo.sh [--port N]"),
    ],
)
def test_the_demo_refuses_a_bad_port_before_starting_anything(
    args: list[str], message: str
) -> None:
    done = subprocess.run(
        ["bash", str(DEMO), *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "lth serve is up" not in done.stdout


def test_the_demo_port_is_taken_from_the_option_then_the_environment() -> None:
    text = DEMO.read_text()
    assert "PORT=${LTH_DEMO_PORT:-8765}" in text
    assert "--port) PORT=${2:?--port needs a number}" in text
    assert "$(if $(DEMO_PORT),--port $(DEMO_PORT))" in (ROOT / "Makefile").read_text()
    # It ends by saying where results are and how to see them again.
    assert "results.json" in text and "lth serve --port $PORT" in text


def test_every_readme_curl_to_the_api_sends_the_key() -> None:
    readme = (ROOT / "README.md").read_text()
    calls = [line for line in readme.splitlines() if re.match(r"\s*curl ", line)]
    assert len(calls) >= 10
    to_api = [c for c in calls if "localhost:8000/" in c and "/readyz" not in c]
    missing = [c for c in to_api if '-H "$AUTH"' not in c and "Authorization: Bearer" not in c]
    assert not missing, missing
