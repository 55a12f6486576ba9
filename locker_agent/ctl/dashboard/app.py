"""The dashboard's web app: the page, its JSON API and the server-sent event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Cookie, Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, StringConstraints

from locker_agent.ctl.dashboard.actions import (
    Commander,
    OpenRequest,
    ServiceRequest,
    open_command,
    outcome,
    service_command,
)
from locker_agent.ctl.dashboard.auth import SESSION_COOKIE, SESSION_TTL_S, Sessions
from locker_agent.ctl.dashboard.fleet import Fleet

STATIC = Path(__file__).parent / "static"
BATCH_INTERVAL_S = 0.1
"""Changes are sent to pages at most this often, coalesced per locker."""
KEEPALIVE_S = 15.0
SWEEP_INTERVAL_S = 1.0
"""How often expired sessions, and those of removed operators, are ended with their streams;
the operators file is read again as often, if it changed."""
SUBSCRIBER_BACKLOG = 512
"""Batches a slow page may lag behind before it is dropped (it reconnects to a snapshot)."""
logger = logging.getLogger(__name__)

FAILED_SIGN_IN_DELAY_S = 0.5
MAX_WAITING_SIGN_INS = 8
"""Sign-ins queued for the one scrypt worker at once; one more is answered 429 at once."""
SECURITY_HEADERS = {
    "Content-Security-Policy":
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""The page loads nothing from outside (a depot laptop may be offline) and cannot be framed."""


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, StringConstraints(max_length=512)]


Page = asyncio.Queue[bytes | None]
"""One open event stream: the frames waiting for it; None ends it."""


class Hub:
    """Drains the fleet's changes on a timer and fans each batch out to every open page.

    Each page belongs to the session that opened it: ending the session ends its pages.
    Used on the event loop only.
    """

    def __init__(self, fleet: Fleet, interval_s: float = BATCH_INTERVAL_S) -> None:
        self.fleet = fleet
        self.interval_s = interval_s
        self._pages: dict[Page, str] = {}

    def open(self, session_id: str) -> Page:
        page: Page = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._pages[page] = session_id
        return page

    def close(self, page: Page) -> None:
        self._pages.pop(page, None)

    def streams(self, session_id: str) -> int:
        """How many event streams the session has open."""
        return sum(owner == session_id for owner in self._pages.values())

    def end_session(self, session_id: str) -> None:
        """End every stream the session has open (signed out, expired or revoked)."""
        for page in [p for p, owner in self._pages.items() if owner == session_id]:
            self._end(page)

    def _end(self, page: Page) -> None:
        self._pages.pop(page, None)
        while not page.empty():
            page.get_nowait()
        page.put_nowait(None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.publish_changes()
            except Exception:
                # one bad message must not stop the live view for every page
                logger.exception("could not publish the fleet's changes; going on")

    def publish_changes(self) -> None:
        batch = self.fleet.drain()
        if batch is None:
            return
        frame = sse("batch", batch)
        for page in list(self._pages):
            try:
                page.put_nowait(frame)
            except asyncio.QueueFull:  # too slow: end its stream, it reconnects afresh
                self._end(page)


SessionCookie = Annotated[str | None, Cookie(alias=SESSION_COOKIE)]


def signed_in(request: Request, session: SessionCookie = None) -> str:
    """The operator holding the request's session; 401 without one."""
    sessions: Sessions = request.app.state.sessions
    name = sessions.operator(session)
    if name is None:
        raise HTTPException(401, "sign in first")
    return name


Operator = Annotated[str, Depends(signed_in)]


def _same_origin(request: Request) -> bool:
    """Did the browser say this request came from the dashboard's own page?

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` on every write; a client that sends
    neither (curl, scripts) is not a browser being tricked, and is let through.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host
    return True


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def create_app(fleet: Fleet, sessions: Sessions, send: Commander, *,
               batch_interval_s: float = BATCH_INTERVAL_S,
               sweep_interval_s: float = SWEEP_INTERVAL_S, secure_cookie: bool = False
               ) -> FastAPI:
    hub = Hub(fleet, batch_interval_s)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(sweep_interval_s)
            try:
                await asyncio.to_thread(sessions.operators.refresh)
                for session_id in sessions.sweep():
                    hub.end_session(session_id)
            except Exception:
                logger.exception("could not sweep the sessions; going on")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(sweep())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="locker fleet dashboard", lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.hub = hub
    app.state.sessions = sessions
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    failed_sign_ins = asyncio.Lock()

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: Any) -> Any:
        """Refuse a write another site or page made the operator's browser send (CSRF)."""
        if request.method not in ("GET", "HEAD", "OPTIONS") and not _same_origin(request):
            return JSONResponse({"detail": "refused: the request did not come from this page"},
                                status_code=403)
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # scrypt runs on a worker of its own, never in the pool every other request uses, and
    # only so many sign-ins may wait for it: a crowd of bogus ones cannot stall the page
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-sign-in")
    waiting = {"sign_ins": 0}

    @app.post("/api/session")
    async def sign_in(body: SignIn, response: Response) -> dict[str, str]:
        # the operator is whoever the token belongs to: nothing the page says names them
        if waiting["sign_ins"] >= MAX_WAITING_SIGN_INS:
            raise HTTPException(429, "too many sign-ins at once: try again in a moment",
                                headers={"Retry-After": "1"})
        waiting["sign_ins"] += 1
        try:
            signed = await asyncio.get_running_loop().run_in_executor(
                hasher, sessions.sign_in, body.token)
        finally:
            waiting["sign_ins"] -= 1
        if signed is None:
            # one failure at a time, each taking its delay: guessing runs at a few a second
            # however many requests are sent at once
            async with failed_sign_ins:
                await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
            raise HTTPException(401, "that token is not valid (or its operator was removed)")
        session_id, name = signed
        response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", secure=secure_cookie, path="/")
        return {"operator": name}

    @app.get("/api/session")
    def who(name: Operator) -> dict[str, str]:
        return {"operator": name}

    @app.delete("/api/session")
    async def sign_out(response: Response, session: SessionCookie = None) -> dict[str, bool]:
        sessions.sign_out(session)
        if session:
            hub.end_session(session)  # its open event streams end now, in every tab
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"ok": True}

    @app.get("/api/fleet")
    def fleet_snapshot(_name: Operator) -> dict[str, Any]:
        return fleet.snapshot()

    @app.get("/api/lockers/{locker_id}")
    def locker(locker_id: str, _name: Operator) -> dict[str, Any]:
        found = fleet.locker(locker_id)
        if found is None:
            raise HTTPException(404, f"no locker {locker_id!r} has published on this broker")
        return found

    @app.get("/api/stream")
    async def stream(request: Request, _name: Operator, session: SessionCookie = None
                     ) -> StreamingResponse:
        assert session is not None  # signed_in let it through
        page = hub.open(session)
        if sessions.operator(session) is None:  # signed out between the check and the open
            hub.close(page)
            raise HTTPException(401, "signed out")

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                yield sse("snapshot", fleet.snapshot())
                while True:
                    try:
                        frame = await asyncio.wait_for(page.get(), KEEPALIVE_S)
                    except TimeoutError:
                        if await request.is_disconnected() or sessions.operator(session) is None:
                            return
                        yield b": keepalive\n\n"
                        continue
                    if frame is None or sessions.operator(session) is None:
                        return
                    yield frame
            finally:
                hub.close(page)

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    def act(locker_id: str, name: str, args: dict[str, Any]) -> JSONResponse:
        if locker_id not in fleet.ids():
            raise HTTPException(404, f"no locker {locker_id!r} has published on this broker")
        status, body = outcome(locker_id, name, send, args)
        return JSONResponse(body, status_code=status)

    @app.post("/api/lockers/{locker_id}/open")
    async def open_compartment(locker_id: str, body: OpenRequest, name: Operator
                               ) -> JSONResponse:
        command, args = open_command(body, name)
        return await run_in_threadpool(act, locker_id, command, args)

    @app.post("/api/lockers/{locker_id}/service")
    async def set_service(locker_id: str, body: ServiceRequest, name: Operator
                          ) -> JSONResponse:
        try:
            command, args = service_command(body, name)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return await run_in_threadpool(act, locker_id, command, args)

    @app.post("/api/lockers/{locker_id}/sync")
    async def sync(locker_id: str, _name: Operator) -> JSONResponse:
        return await run_in_threadpool(act, locker_id, "sync", {})

    @app.post("/api/lockers/{locker_id}/alarms/{key}/acknowledge")
    def acknowledge(locker_id: str, key: str, _name: Operator) -> dict[str, bool]:
        if not fleet.acknowledge(locker_id, key):
            raise HTTPException(404, "no such alarm (already lifted?)")
        return {"ok": True}

    return app
