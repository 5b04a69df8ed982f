"""Every error the appliance raises on purpose.

The CLI catches ``ApplianceError`` once, prints its message without a traceback and
exits non-zero. Messages say what was expected, what was found, and name the file, host
or component involved; each layer adds its context.

Tree::

    ApplianceError
    ├── PrerequisiteError        a tool, a package or room on disk is missing here
    │   └── RegistryRefusedError a package registry answered "no" for something we need
    ├── DefinitionError          a bundle definition file is malformed or unsafe
    ├── BuildError               building a component failed
    ├── CommandError             an external program exited non-zero
    ├── SigningKeyError      signing keys missing, unreadable or wrongly protected
    ├── MediaError               media that cannot be read (not a trust decision)
    ├── LabError                 the multi-host lab cannot be made, reached or removed
    ├── InstallError             installing onto the site's hosts failed
    │   └── PreflightError       a host does not meet what the install needs
    └── BundleError              untrusted input: the bundle is not what was signed
        ├── MetadataError        metadata malformed, inconsistent, or mixed from bundles
        ├── SignatureError       signed by the wrong keys, or below the threshold
        ├── ExpiredMetadataError metadata past its expiry
        ├── RollbackError        not newer than what the site trusts or runs
        ├── DigestMismatchError  content differs from what the metadata says
        ├── SizeMismatchError    content longer or shorter than the metadata says
        ├── MissingFileError     a file the metadata names is not on the media
        ├── UnexpectedFileError  a file on the media that the metadata does not name
        └── UnsafePathError      an absolute path, '..', or a symbolic link

Subtrees that live beside their code: ``ZitiError`` (appliance.ziti.errors: controller
unreachable, auth, request, response), ``AuditIntegrityError`` and ``MerkleProofError``
(appliance.audit), ``CertificateRequestError`` (appliance.crypto.member_ca),
``AccountError`` and ``IdentityError`` (appliance.admin.services), ``BreakglassError``
(appliance.breakglass.errors) and ``GateError`` (appliance.breakglass.gate),
``RecordingIntegrityError`` and ``UnsealedRecordingError``
(appliance.audit.recordings.errors) and ``PlaybackError`` (its ``asciicast``),
``SettingsError`` (appliance.admin.settings), ``DatabaseError`` (appliance.db.engine).
Untrusted input (bundles, media, audit exports) stays apart from operational failures.
"""

from __future__ import annotations

__all__ = [
    "ApplianceError",
    "BuildError",
    "BundleError",
    "CommandError",
    "DefinitionError",
    "DigestMismatchError",
    "ExpiredMetadataError",
    "InstallError",
    "LabError",
    "MediaError",
    "MetadataError",
    "MissingFileError",
    "PreflightError",
    "PrerequisiteError",
    "RegistryRefusedError",
    "RollbackError",
    "SignatureError",
    "SigningKeyError",
    "SizeMismatchError",
    "UnexpectedFileError",
    "UnsafePathError",
]


class ApplianceError(Exception):
    """Root of every error the appliance raises deliberately."""

    #: What the user can do about it; printed on its own line by the CLI when set.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class PrerequisiteError(ApplianceError):
    """Something this machine must provide is missing (a program, a package, disk)."""


class RegistryRefusedError(PrerequisiteError):
    """A package registry refused to serve something the build needs."""


class DefinitionError(ApplianceError):
    """A bundle definition cannot be used as written."""


class BuildError(ApplianceError):
    """A component could not be built."""


class CommandError(ApplianceError):
    """An external program exited with a failure status."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(
            f"`{' '.join(argv[:4])}{' …' if len(argv) > 4 else ''}` exited with status "
            f"{returncode}" + (f":\n{tail}" if tail else "")
        )


class SigningKeyError(ApplianceError):
    """Signing keys are missing, unreadable, or not protected as they must be."""


class MediaError(ApplianceError):
    """The media cannot be read (a device error, a missing volume): not a trust decision."""


class LabError(ApplianceError):
    """The multi-host lab (network namespaces, nspawn machines) cannot be made or reached."""


class InstallError(ApplianceError):
    """Installing onto the site's hosts failed (a host, a role, a health check)."""


class PreflightError(InstallError):
    """One or more hosts do not meet what the install needs; nothing was changed."""


class BundleError(ApplianceError):
    """The bundle is not what its vendor signed: refuse it, touch nothing."""


class MetadataError(BundleError):
    """Metadata is malformed, inconsistent, or mixed from different bundles."""


class SignatureError(BundleError):
    """Metadata is signed by keys the trusted root does not name, or below threshold."""


class ExpiredMetadataError(BundleError):
    """Metadata is past its expiry date."""


class RollbackError(BundleError):
    """The bundle or its metadata is not newer than what the site already trusts."""


class DigestMismatchError(BundleError):
    """A file's content differs from the digest its metadata gives."""


class SizeMismatchError(BundleError):
    """A file is longer or shorter than its metadata says."""


class MissingFileError(BundleError):
    """A file that the metadata names is not on the media."""


class UnexpectedFileError(BundleError):
    """A file on the media is not named by the metadata."""


class UnsafePathError(BundleError):
    """A path is absolute, climbs out with '..', or is a symbolic link."""
