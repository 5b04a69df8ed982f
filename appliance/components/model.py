"""The lab's tiny test model, generated inside the vLLM image with no network.

Real Llama architecture, random weights, tokenizer trained locally: the serving path is
real even though the output is gibberish. Cached under ``$APPLIANCE_CACHE/models/<key>``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from appliance._fsutil import input_key, staging_dir
from appliance._process import run
from appliance.cache import ledger
from appliance.definition import TinyLlamaBuild
from appliance.settings import cache_dir

__all__ = ["BuiltFiles", "build_tiny_llama", "tree_digest"]


@dataclass(frozen=True)
class BuiltFiles:
    """Files written for a component, with a digest over the whole tree."""

    path: Path
    sha256: str
    size: int
    cached: bool


def build_tiny_llama(
    spec: TinyLlamaBuild, runner_image: str, runner_id: str, dest: Path
) -> BuiltFiles:
    """Generate the model with ``runner_image``'s Python and copy it to ``dest``."""
    script = resources.files("appliance.components") / "scripts" / "tiny_llama.py"
    script_text = script.read_text(encoding="utf-8")
    params = spec.model_dump(exclude={"kind", "runner"})
    key = input_key("tiny-llama/1", params, script_text, runner_id)
    cached_dir = cache_dir() / "models" / key
    ledger.note(cached_dir)
    cached = cached_dir.is_dir()
    if not cached:
        with staging_dir(cached_dir) as stage:
            stage.chmod(0o777)  # the container may run as another uid; reset below
            (stage / ".gen.py").write_text(script_text, encoding="utf-8")
            run(
                [
                    "podman",
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--volume",
                    f"{stage}:/out",
                    "--entrypoint",
                    "/opt/vllm/bin/python",
                    runner_image,
                    "/out/.gen.py",
                    "/out",
                    json.dumps(params, sort_keys=True),
                ]
            )
            (stage / ".gen.py").unlink()
            stage.chmod(0o755)
            for produced in stage.iterdir():
                produced.chmod(0o644)
    with staging_dir(dest) as stage:
        shutil.copytree(cached_dir, stage, dirs_exist_ok=True)
    digest, size = tree_digest(dest)
    return BuiltFiles(dest, digest, size, cached)


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over relative paths and contents of every file under ``root``, and total size."""
    outer = hashlib.sha256()
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        inner = hashlib.sha256(path.read_bytes()).hexdigest()
        outer.update(f"{path.relative_to(root).as_posix()}\0{inner}\n".encode())
        total += path.stat().st_size
    return outer.hexdigest(), total
