"""Build every component a bundle definition names, and write the lock file.

Components build independently: one that fails (an upstream module the registry refuses,
say) is reported with its reason while the others still build, and the run as a whole
fails. Everything heavy is cached on its inputs, so a second run is fast.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from appliance.cache import ledger
from appliance.components import podman
from appliance.components.images import (
    BuiltImage,
    build_appliance_image,
    build_module_image,
    build_python_image,
    image_tag,
)
from appliance.components.lock import (
    LOCK_NAME,
    FileLock,
    Fips,
    ImageLock,
    Lock,
    ProgramLock,
    read_lock,
    write_lock,
)
from appliance.components.model import build_tiny_llama
from appliance.components.oci import manifest_digest
from appliance.components.program import sha256_file
from appliance.components.pylock import debian_pins, locked_for
from appliance.components.rootfs import BaseImage, ensure_base_image
from appliance.components.sbom_image import write_image_sbom
from appliance.components.source import import_image_source
from appliance.components.supplied import build_supplied_image, supplied_for
from appliance.components.wheelhouse import Locked
from appliance.definition import (
    ApplianceWheelBuild,
    Component,
    Definition,
    GoBinaryBuild,
    ImageSourceBuild,
    PythonVenvBuild,
    TinyLlamaBuild,
)
from appliance.errors import (
    ApplianceError,
    BuildError,
    CommandError,
    DefinitionError,
    PrerequisiteError,
)
from appliance.settings import cache_dir

__all__ = [
    "MIN_FREE_BYTES",
    "BuildReport",
    "ComponentResult",
    "build_components",
    "ensure_free_space",
]

Status = Literal["built", "cached", "failed"]

#: Free space a build needs where the cache and the archives live: the lab's vLLM image
#: alone takes about 0.9 GiB of wheels, 3.7 GiB in podman's storage and 1.1 GiB archived.
MIN_FREE_BYTES = 8 * 2**30


@dataclass
class ComponentResult:
    """What happened to one component."""

    name: str
    version: str
    status: Status
    seconds: float
    image: ImageLock | None = None
    files: FileLock | None = None
    error: ApplianceError | None = None
    reused: list[str] = field(default_factory=list)


@dataclass
class BuildReport:
    """The outcome of a build run."""

    lock_path: Path
    results: list[ComponentResult]

    @property
    def failed(self) -> list[ComponentResult]:
        """Components that could not be built."""
        return [r for r in self.results if r.status == "failed"]


def build_components(
    definition: Definition,
    *,
    out: Path | None = None,
    only: list[str] | None = None,
    sources: dict[str, str] | None = None,
    supplied: Path | None = None,
    on_start: Callable[[Component], None] | None = None,
) -> BuildReport:
    """Build the components of ``definition`` (or just ``only``) and update the lock file.

    ``sources`` replaces the reference of ``kind: image`` components by name, so a build
    machine can supply vLLM's GPU image from an archive without editing the definition;
    for a Go component it names a prebuilt program (an executable, a release archive or an
    upstream image). ``supplied`` is a folder of prebuilt programs (``ziti``,
    ``llm-gateway`` or their release archives) used for the Go components that neither
    ``sources`` nor the definition supply.
    """
    sources = dict(sources or {})
    unknown = sorted(set(sources) - {c.name for c in definition.components})
    if unknown:
        raise DefinitionError(f"--source names no component of {definition.name}: {unknown}")
    program_sources = {
        name: ref
        for name, ref in sources.items()
        if isinstance(definition.component(name).build, GoBinaryBuild)
    }
    definition = _with_sources(
        definition, {k: v for k, v in sources.items() if k not in program_sources}
    )
    selected = [definition.component(n) for n in only] if only else list(definition.components)
    out_dir = out.resolve() if out is not None else _default_out(definition)
    lock_path = out_dir / LOCK_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in {out_dir, cache_dir()}:
        ensure_free_space(folder, MIN_FREE_BYTES)
    previous = read_lock(lock_path)
    run = _Run(definition, out_dir, previous, program_sources, supplied)

    results: list[ComponentResult] = []
    for component in selected:
        if component.build is None:
            continue
        if on_start is not None:
            on_start(component)
        results.append(run.build(component))

    images = {i.name: i for i in (previous.images if previous else [])}
    files = {f.name: f for f in (previous.files if previous else [])}
    for result in results:
        if result.image is not None:
            images[result.name] = result.image
        if result.files is not None:
            files[result.name] = result.files
    # Drop entries whose outputs are gone or whose component left the definition.
    names = {c.name for c in definition.components}
    kept_images = [
        i for i in images.values() if i.name in names and (out_dir / i.archive).is_file()
    ]
    kept_files = [
        f for f in files.values() if f.name in names and (definition.root_dir / f.path).exists()
    ]
    write_lock(
        lock_path,
        Lock(
            bundle=definition.name,
            bundle_version=definition.version,
            images=kept_images,
            files=kept_files,
        ),
    )
    return BuildReport(lock_path, results)


class _Run:
    """State shared by the components of one build run."""

    def __init__(
        self,
        definition: Definition,
        out_dir: Path,
        previous: Lock | None,
        program_sources: dict[str, str],
        supplied: Path | None,
    ) -> None:
        self.definition = definition
        self.out_dir = out_dir
        self.program_sources = program_sources
        self.supplied = supplied
        self.previous = {i.name: i for i in (previous.images if previous else [])}
        self.base: BaseImage | None = None
        self.images: dict[str, ImageLock] = {}
        self.failed: dict[str, ApplianceError] = {}

    def build(self, component: Component) -> ComponentResult:
        start = time.monotonic()
        try:
            # What this component used stays cached while this output folder exists.
            with ledger.using(self.out_dir, component.name):
                result = self._build(component)
                if result.image is not None:
                    ledger.note_image(image_tag(component))
        except (ApplianceError, OSError) as exc:
            error = _explain(component, exc)
            self.failed[component.name] = error
            return ComponentResult(
                component.name, component.version, "failed", time.monotonic() - start, error=error
            )
        result.seconds = time.monotonic() - start
        return result

    def _build(self, component: Component) -> ComponentResult:
        spec = component.build
        if isinstance(spec, TinyLlamaBuild):
            return self._model(component, spec)
        built: BuiltImage
        if isinstance(spec, GoBinaryBuild):
            origin = supplied_for(
                self.definition,
                component,
                spec,
                override=self.program_sources.get(component.name),
                folder=self.supplied,
            )
            if origin is None:
                built = build_module_image(component, spec)
            else:
                built = build_supplied_image(component, spec, origin)
        elif isinstance(spec, PythonVenvBuild):
            built = build_python_image(component, spec, self._base(), self._locked(component))
        elif isinstance(spec, ApplianceWheelBuild):
            built = build_appliance_image(component, spec, self._base(), self._locked(component))
        elif isinstance(spec, ImageSourceBuild):
            built = import_image_source(component, spec)
        else:  # pragma: no cover - the definition model admits no other kind
            raise BuildError(f"{component.name}: nothing knows how to build {spec!r}")
        return self._save(component, built)

    def _locked(self, component: Component) -> Locked | None:
        """The wheels the definition's lock pins for ``component`` (None: no lock)."""
        return locked_for(self.definition, component.name)

    def _base(self) -> BaseImage:
        if self.base is None:
            if self.definition.base is None:
                raise DefinitionError(
                    f"{self.definition.name}: Python images need a `base:` section "
                    "(Debian suite, variant, packages)"
                )
            self.base = ensure_base_image(self.definition.base, debian_pins(self.definition))
        else:  # made for an earlier component of this run: this one uses it too
            ledger.note(self.base.rootfs)
            ledger.note_image(self.base.tag)
        return self.base

    def _save(self, component: Component, built: BuiltImage) -> ComponentResult:
        if component.image is None:
            raise DefinitionError(f"{component.name}: a built image needs an `image:` path")
        archive = self.out_dir / Path(component.image).name
        old = self.previous.get(component.name)
        reuse = (
            old is not None
            and old.image_id == built.image_id
            and archive.is_file()
            and archive.stat().st_size == old.size
        )
        if not reuse:
            podman.save_oci_archive(built.tag, archive)
        sbom = self.out_dir / f"{component.name}.cdx.json"
        # The same image keeps its SBOM, if the file is still the one the lock names.
        recorded = old.sbom_sha256 if reuse and old is not None else None
        if recorded is None or recorded != _sha256(sbom):
            write_image_sbom(component, built, sbom)
        entry = ImageLock(
            name=component.name,
            version=component.version,
            source=built.source,
            archive=archive.name,
            digest=manifest_digest(archive),
            image_id=built.image_id,
            size=archive.stat().st_size,
            fips=Fips(built_for_fips=built.fips.built_for_fips, detail=built.fips.detail),
            program=_program_lock(built),
            sbom=sbom.name,
            sbom_sha256=_sha256(sbom),
        )
        self.images[component.name] = entry
        reused = [*built.inputs_cached, *(["oci archive"] if reuse else [])]
        return ComponentResult(
            component.name,
            component.version,
            "cached" if reuse else "built",
            0.0,
            image=entry,
            reused=reused,
        )

    def _model(self, component: Component, spec: TinyLlamaBuild) -> ComponentResult:
        if spec.runner in self.failed:
            raise BuildError(
                f"{component.name} is generated with the {spec.runner} image, which failed"
            )
        runner = self.images.get(spec.runner) or self.previous.get(spec.runner)
        if runner is None:
            raise BuildError(
                f"{component.name} is generated with the {spec.runner} image: build it first"
            )
        if not component.files:
            raise DefinitionError(f"{component.name}: a model needs a `files:` path to write")
        dest = self.definition.resolve(component.files[0].path, what=component.name)
        tag = f"localhost/appliance/{spec.runner}:{self.definition.component(spec.runner).version}"
        built = build_tiny_llama(spec, tag, runner.image_id, dest)
        entry = FileLock(
            name=component.name,
            version=component.version,
            source=f"tiny-llama seed={spec.seed} hidden={spec.hidden_size} "
            f"layers={spec.layers} vocab={spec.vocab_size}",
            path=dest.relative_to(self.definition.root_dir).as_posix(),
            sha256=built.sha256,
            size=built.size,
        )
        return ComponentResult(
            component.name,
            component.version,
            "cached" if built.cached else "built",
            0.0,
            files=entry,
            reused=["model"] if built.cached else [],
        )


def _sha256(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _program_lock(built: BuiltImage) -> ProgramLock | None:
    facts = built.program
    if facts is None:
        return None
    return ProgramLock(
        path=built.program_path or "",
        version=facts.version,
        sha256=facts.sha256,
        go_version=facts.go_version,
        main_module=facts.main_module,
        settings=facts.settings,
        supplied=built.source,
    )


def ensure_free_space(folder: Path, needed: int) -> None:
    """Refuse to start when ``folder``'s file system has less than ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise PrerequisiteError(
            f"only {free / 2**30:.1f} GiB free under {folder}; a build needs "
            f"{needed / 2**30:.0f} GiB",
            hint="free space there (old images: `podman image prune`), or point "
            "APPLIANCE_CACHE / --out at a larger disk",
        )


def _explain(component: Component, exc: ApplianceError | OSError) -> ApplianceError:
    """Turn a full disk into a prerequisite error; pass other ApplianceErrors through."""
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (
        isinstance(exc, CommandError) and "no space left on device" in exc.output.lower()
    )
    if full:
        return PrerequisiteError(
            f"{component.name}: the disk filled up while building it; nothing half-written "
            "was kept",
            hint="free space (`podman image prune`, or a larger APPLIANCE_CACHE disk) and "
            "build again",
        )
    if isinstance(exc, OSError):
        return BuildError(f"{component.name}: {exc}")
    return exc


def _with_sources(definition: Definition, sources: dict[str, str]) -> Definition:
    if not sources:
        return definition
    replaced = []
    for component in definition.components:
        reference = sources.get(component.name)
        if reference is not None:
            if not isinstance(component.build, ImageSourceBuild):
                raise DefinitionError(
                    f"--source {component.name}=…: only image components (kind: image) and "
                    "Go programs (kind: go-binary) take a source"
                )
            build = component.build.model_copy(update={"reference": reference, "digest": None})
            component = component.model_copy(update={"build": build})
        replaced.append(component)
    return definition.model_copy(update={"components": replaced})


def _default_out(definition: Definition) -> Path:
    folders = {
        definition.resolve(c.image, what=c.name).parent
        for c in definition.components
        if c.image is not None
    }
    if len(folders) != 1:
        raise DefinitionError(f"{definition.name}: images are not all in one folder; pass --out")
    return folders.pop()
