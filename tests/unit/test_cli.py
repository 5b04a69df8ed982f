"""The command line: help reads well; errors are one clear message, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.unit.appliance_cli import cli as appliance

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--help",), "components"),
        (("components", "--help"), "Build the component images"),
        (("components", "build", "--help"), "--definition"),
    ],
)
def test_help(args: tuple[str, ...], expected: str) -> None:
    result = appliance(*args)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_no_arguments_shows_help() -> None:
    result = appliance()
    assert "Air-gapped LLM appliance" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = appliance("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("appliance ")


def test_missing_definition_is_one_clear_line(tmp_path: Path) -> None:
    result = appliance("components", "build", "--definition", str(tmp_path / "none.yaml"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: bundle definition {tmp_path / 'none.yaml'} does not exist" in result.stderr


def test_missing_program_says_what_to_install(tmp_path: Path) -> None:
    definition = tmp_path / "d.yaml"
    definition.write_text(
        "name: t\nversion: '1'\ncomponents:\n"
        "  - name: hello\n    version: '1'\n    image: out/hello.oci.tar\n"
        "    build: {kind: go-binary, module: example.test/m, version: v1.0.0,"
        " package: ., binary: hello}\n"
    )
    # A PATH with python but neither go nor podman.
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    result = appliance(
        "components",
        "build",
        "--definition",
        str(definition),
        env={"PATH": str(bare), "APPLIANCE_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "`go` is not installed on this machine" in result.stdout
    assert "what to do: install a Go toolchain" in result.stdout
    assert "error: 1 of 1 components failed: hello" in result.stderr


def test_bad_source_option(tmp_path: Path) -> None:
    result = appliance("components", "build", "--source", "novalue")
    assert result.returncode == 1
    assert "--source 'novalue': expected NAME=REFERENCE" in result.stderr


def test_admin_serve_refuses_production_without_controller_credentials(tmp_path: Path) -> None:
    result = appliance(
        "admin",
        "serve",
        "--db",
        f"sqlite:///{tmp_path / 'a.db'}",
        env={"APPLIANCE_ADMIN_PROFILE": "production"},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "controller_password_file is required in production" in result.stderr
    assert "what to do: set it in the config file" in result.stderr


def test_admin_bad_config_file_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "admin.yaml"
    config.write_text("port: not-a-number\n")
    result = appliance("admin", "migrate", "--config", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "admin service settings: port: Input should be a valid integer" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("bundle", "verify", "/tmp", "--root", "/nonexistent/root.json"),
        ("audit", "verify", "/nonexistent/x.tar", "--key", "/nonexistent/key.pem"),
    ],
)
def test_missing_files_are_usage_errors(args: tuple[str, ...]) -> None:
    result = appliance(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "does not exist" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("admin", "create-user", "bob", "--role", "admin"),
        ("audit", "check"),
        ("admin", "serve", "--port", "1"),
    ],
)
def test_an_unmigrated_database_says_to_migrate(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = appliance(
        *args,
        "--db",
        url,
        env={"APPLIANCE_ADMIN_PROFILE": "lab", "APPLIANCE_ADMIN_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "appliance admin migrate" in result.stderr
