"""`assoc serve`: the web app (assoc.web) over one Searcher, kept open (model and store) while it runs.

It listens on loopback unless --host names another address. On loopback it answers only requests
addressed to a loopback name (localhost, 127.0.0.1, [::1]), and asks for a token only when --token
gives one; on any other address every request needs a token: the --token given, or one made for this
run. Either way the address printed carries it. Starlette and
uvicorn come with the `serve` extra and are imported here, inside the command, so searching never
loads them.
"""

from __future__ import annotations

import errno
import socket
import webbrowser
from contextlib import suppress
from typing import Annotated
from urllib.parse import quote

import typer

from ..runtime.errors import AssocError, NoGalleryError
from .options import SearcherOptions, searcher_options

DEFAULT_PORT = 8765
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


@searcher_options
def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Loopback answers only requests addressed to localhost; any other address"
            " needs a token (see --token).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 takes a free one.")] = (
        DEFAULT_PORT
    ),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="Require this token of every request, on loopback too. Off loopback one is made and printed"
            " when none is given.",
        ),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    *,
    target: SearcherOptions,
) -> None:
    """Search and look at your photos in the browser, with the heatmaps on them."""
    try:
        import uvicorn

        from ..web.app import create_app
        from ..web.photos import Photos, thumbnail_folders
        from ..web.security import is_loopback, new_token, valid_token
    except ImportError as exc:
        raise AssocError(f"assoc serve needs the web server ({exc.name}): pip install 'assoc[serve]'") from None
    if token is not None and not valid_token(token):
        raise AssocError("--token needs 8 or more letters, digits, '.', '_', '~' or '-'")
    loopback = is_loopback(host)
    made = token is None and not loopback
    if made:
        token = new_token()
    listener = _listen(host, port)
    try:
        with target.open() as searcher:
            # Load the text encoder and open the store now, not on the first visitor's query; an empty
            # gallery is no reason to refuse (the page says so).
            with suppress(NoGalleryError):
                searcher.search("a photo", k=1, words=True)
            facts = searcher.info().to_dict()
            photos = Photos(searcher, thumbnail_folders(searcher.store_spec))
            app = create_app(photos, token=token, loopback_only=loopback)
            url = _url(host, listener.getsockname()[1], token)
            store = facts["store"]
            model = facts["bundle"]["model_name"]
            typer.echo(f"assoc: serving {store['location']} ({store['photos']} photos) with {model}")
            if not loopback:
                typer.echo(
                    f"assoc: listening on {host}, which other machines can reach: every request needs the token"
                    + (" (made for this run; --token sets one)" if made else "")
                )
            typer.echo(f"open {url}")
            if open_browser:
                webbrowser.open(url)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
            server.run(sockets=[listener])
    finally:
        listener.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so a busy port or a bad address is one clear error before anything loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise AssocError(f"cannot listen on {host}: {exc.strerror}") from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise AssocError(f"port {port} on {host} is in use: choose another --port (0 takes a free one)") from None
        raise AssocError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return listener


def _url(host: str, port: int, token: str | None) -> str:
    """The page's address as a browser should open it (this machine's name for a wildcard address)."""
    shown = socket.gethostname() if host in WILDCARD_HOSTS else host
    if ":" in shown:  # an IPv6 literal
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def register(app: typer.Typer) -> None:
    app.command()(serve)
