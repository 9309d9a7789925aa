"""The gallery page of `eercf report`: one HTML file with its CSS, JS and data inline.

The template, stylesheet and script are package files in `eercf_core/report/assets/`; the data
(see `eercf_core.report.gallery.write_report`) is embedded as JSON in a
`<script type="application/json">` element and rendered by the script, a page of queries at a
time. A Content-Security-Policy allows only inline code and local images, so the page cannot reach
the network.
"""
from __future__ import annotations

import html
import json
from importlib import resources

_ASSETS = resources.files("eercf_core.report") / "assets"


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


def _json_for_script(data: dict) -> str:
    """JSON safe inside a <script> element ("</script>" and "<!--" cannot end or break it)."""
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def render(data: dict) -> str:
    """The complete page for the report `data` (needs a "title" and "queries")."""
    page = _asset("report.html")
    for key, value in (("{{CSS}}", _asset("report.css")), ("{{JS}}", _asset("report.js")),
                       ("{{TITLE}}", html.escape(data.get("title", "eercf results"))),
                       ("{{DATA}}", _json_for_script(data))):
        page = page.replace(key, value)
    return page
