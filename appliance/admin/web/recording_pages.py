"""The auditors' recording page: a window's recorded vendor shell sessions, verified, one
played in the browser beside the window's timeline; and the pinned player's files.

Auditors only (admins are refused, as they are from exports). The player is
asciinema-player, served from the folder the admin image installs it in
(``player_assets``) and only while its files match their pins
(:mod:`appliance.web_assets`); without it the page says so and offers the ``.cast``
download and ``appliance breakglass play``. The page's only script is a file of this
service (no inline script), and its Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from appliance.admin.deps import (
    BreakglassDep,
    DbSession,
    ForbiddenError,
    RowId,
    Settings,
    client_of,
)
from appliance.admin.services.recordings import (
    find,
    record_viewing,
    timeline,
    window_recordings,
)
from appliance.admin.web.common import logged_in, render_for
from appliance.db.models import Role
from appliance.web_assets import PLAYER, AssetError, check_installed, installed

__all__ = ["CSP", "router"]

router = APIRouter(include_in_schema=False)

#: The recording page's policy: scripts and styles of this service only. The player runs
#: its terminal as WebAssembly (hence 'wasm-unsafe-eval') and sets inline styles.
CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PLAYER_PATH = "/assets/player"


@router.get("/breakglass/windows/{window_id}/recordings", response_model=None)
def recordings_page(
    window_id: RowId,
    request: Request,
    db: DbSession,
    settings: Settings,
    bg: BreakglassDep,
    session: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    """The window's recordings and timeline; ``session`` picks the one to play."""
    web_session = logged_in(request, db)
    user = web_session.user
    if user.role != Role.auditor:
        raise ForbiddenError(
            f"{user.username} is an {user.role.value}: only auditors watch recordings"
        )
    window = bg.get_window(db, window_id)
    recordings = window_recordings(db, settings, window)
    playing = find(recordings, session) if session else None
    if playing is None:
        playing = next((r for r in recordings if r.report is not None), None)
    played = playing.session.session_id if playing else None
    record_viewing(db, window, user, client_of(request), [played] if played else [], "page")
    answer = render_for(
        request,
        "recording.html",
        web_session,
        window=window,
        recordings=recordings,
        playing=playing,
        timeline=timeline(db, window, recordings, played),
        player_installed=installed(settings.player_assets),
        player=PLAYER,
        player_path=PLAYER_PATH,
        player_folder=settings.player_assets,
    )
    answer.headers["Content-Security-Policy"] = CSP
    return answer


@router.get(PLAYER_PATH + "/{name}", response_model=None)
def player_asset(name: str, settings: Settings) -> Response:
    """A file of the pinned player, only while it matches its pin."""
    try:
        path = check_installed(settings.player_assets, name)
    except AssetError as exc:
        return PlainTextResponse(str(exc), status_code=404)
    media = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix, "text/plain")
    return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})
