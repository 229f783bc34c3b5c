"""`assoc serve`: a local web app over assoc.api — a Starlette app, its page, and a JSON API under /api/.

Installed with the `serve` extra (Starlette and uvicorn). Nothing on the search path imports this
package: assoc.cli.serve_cmd imports it inside the command. The page is plain HTML, CSS and
JavaScript shipped in static/ (no build step, nothing fetched from elsewhere).
"""
