"""``serve``: the HTTP API (and the queue worker) as a long-running service."""

from __future__ import annotations

from typing import Annotated

import typer

from cdn_preheat.cli._common import State, app, load_settings


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on; beyond loopback an API token is required.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 for any free one.")] = 8000,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker", help="Run the queue worker in this process, on its ledger."
        ),
    ] = True,
    idle: Annotated[
        float, typer.Option(help="Seconds between the worker's looks at an empty queue.")
    ] = 30.0,
) -> None:
    """Serve the /v1 API, /metrics and the health checks on uvicorn; push the queue too.

    Tokens: CDN_PREHEAT_API_TOKENS (comma-separated) or CDN_PREHEAT_API_TOKENS_FILE.
    Playlists are fetched only from CDN_PREHEAT_ALLOWED_ORIGINS, never from loopback,
    link-local or private addresses unless CDN_PREHEAT_ALLOWED_NETWORKS lists them.
    Stops cleanly on SIGTERM or Ctrl-C.
    """
    from cdn_preheat.service.runner import serve as run
    from cdn_preheat.service.settings import load_service_settings

    code = run(
        load_settings(), load_service_settings(),
        host=host, port=port, worker=worker, idle=idle, debug=State.debug,
    )  # fmt: skip
    raise typer.Exit(code)
