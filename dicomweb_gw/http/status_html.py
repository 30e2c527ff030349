"""The status page's HTML, drawn from the status snapshot (``GET /admin/status``'s dict).

One function per section, each returning the section's inner HTML; ``render_page``
puts them into ``status_assets/page.html``. Every value from the snapshot goes
through :func:`_e` (``html.escape``): node names, messages and UIDs come from
settings and from PACS answers, neither of which the page trusts. The snapshot
carries no patient data and nothing here adds any.

The page works without JavaScript: every action is a ``<form method="post">``
with the CSRF token as a hidden field (the backend answers a form post with a
303 back to the page). ``page.js`` only sends those forms with ``fetch`` and
redraws the sections marked ``data-section`` from a fresh copy of this page.

URLs are relative (``admin/...``, ``status/assets/...``): they resolve the same
from ``/`` and ``/status``, and stay under a reverse proxy's path prefix.
"""

from __future__ import annotations

import functools
import html
import string
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from urllib.parse import quote, urlencode

__all__ = ["SECTIONS", "render_page"]

Snapshot = Mapping[str, object]
MISSING = "—"
HEALTH_WORDS = {"ok": "ok", "failing": "failing", "unknown": "unknown"}


# --------------------------------------------------------------------------- values


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: object) -> list[Mapping[str, object]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) \
        else []


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: object) -> str:
    """Escaped text, or a dash for a missing value."""
    return MISSING if value is None or value == "" else _e(value)


def _count(value: object) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:,.0f}"


def _bytes(value: object) -> str:
    """Decimal units, as the size settings read them (``10GB`` is 10**10 bytes)."""
    number = _number(value)
    if number is None:
        return MISSING
    for unit in ("B", "kB", "MB", "GB"):
        if abs(number) < 1000:
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1000
    return f"{number:.1f} TB"


def _duration(value: object) -> str:
    seconds = _number(value)
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, hours, days = int(seconds // 60), int(seconds // 3600), int(seconds // 86400)
    if seconds < 3600:
        return f"{minutes} min {int(seconds % 60)} s"
    if seconds < 86400:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _percent(value: object) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.0%}"


def _time(value: object) -> str:
    """An ISO 8601 UTC time as ``<time>``, shown as ``2026-12-03 02:40:00 UTC``."""
    if not isinstance(value, str) or not value:
        return MISSING
    shown = value.replace("T", " ").removesuffix("Z").split(".")[0]
    suffix = " UTC" if value.endswith(("Z", "+00:00")) else ""
    return f'<time datetime="{_e(value)}">{_e(shown.removesuffix("+00:00"))}{suffix}</time>'


def _yes_no(value: object, yes: str = "yes", no: str = "no") -> str:
    if value is None:
        return MISSING
    return yes if value else no


def _path(*segments: object) -> str:
    """A relative URL from path segments, each percent-encoded whole."""
    return "/".join(quote(str(segment), safe="") for segment in segments)


# --------------------------------------------------------------------------- building blocks


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
           empty: str) -> str:
    """A table with column headers; the first cell of each row heads its row.

    ``rows`` hold HTML already escaped.
    """
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in headers)
    body = "".join(
        "<tr>" + f'<th scope="row">{row[0]}</th>' + "".join(f"<td>{cell}</td>" for cell in row[1:])
        + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><caption>{_e(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def _facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list; values hold HTML already escaped."""
    items = "".join(f"<div><dt>{_e(name)}</dt><dd>{value}</dd></div>" for name, value in pairs)
    return f'<dl class="facts">{items}</dl>'


def _action(action: str, token: str, button_id: str, label: str, text: str, *,
            fields: Mapping[str, str] | None = None, confirm: str | None = None) -> str:
    """A POST form with the CSRF token: works without JavaScript, ``page.js`` sends it
    with ``fetch``. ``label`` is the button's accessible name (it names the target)."""
    hidden = "".join(f'<input type="hidden" name="{_e(name)}" value="{_e(value)}">'
                     for name, value in {"csrf_token": token, **(fields or {})}.items())
    confirm_attr = f' data-confirm="{_e(confirm)}"' if confirm else ""
    return (f'<form class="action" method="post" action="{_e(action)}"{confirm_attr}>'
            f'{hidden}<button type="submit" id="{_e(button_id)}" aria-label="{_e(label)}">'
            f"{_e(text)}</button></form>")


def _progress(value: object, maximum: object, label: str) -> str:
    """A ``<progress>`` (indeterminate when the maximum is unknown) and the numbers."""
    done, total = _number(value), _number(maximum)
    if done is None:
        return MISSING
    if total is None or total <= 0:
        return (f'<progress aria-label="{_e(label)}"></progress> '
                f'<span class="num">{_count(done)} of ?</span>')
    return (f'<progress max="{total:g}" value="{min(done, total):g}" aria-label="{_e(label)}">'
            f"</progress> "
            f'<span class="num">{_count(done)} of {_count(total)}</span>')


def _badge(health: object) -> str:
    """Colour AND a word: the word is the badge's text."""
    word = HEALTH_WORDS.get(str(health), "unknown")
    return f'<span class="badge health-{word}" data-health="{word}">{word}</span>'


# --------------------------------------------------------------------------- sections


def auth_warning(snapshot: Snapshot) -> str:
    auth = _map(snapshot.get("auth"))
    if auth.get("enabled", False) is not False:
        return ""
    warning = auth.get("warning") or ("Authentication is off: anyone who can reach this port "
                                      "can read images and use this page.")
    return f'<p class="warning" role="alert">{_e(warning)}</p>'


def gateway_section(snapshot: Snapshot) -> str:
    gateway = _map(snapshot.get("gateway"))
    facts = _facts([
        ("Version", _text(gateway.get("version"))),
        ("Started", _time(gateway.get("started_at"))),
        ("Uptime", _duration(gateway.get("uptime_seconds"))),
        ("Replica", _text(gateway.get("replica_id"))),
        ("DICOMweb root", _text(gateway.get("base_url"))),
        ("Snapshot taken", _time(snapshot.get("generated_at"))),
    ])
    return '<h2 id="gateway-heading" tabindex="-1">Gateway</h2>' + facts


def config_section(snapshot: Snapshot) -> str:
    """Last on the page: long, and rarely what an administrator comes for."""
    rows = [[_text(item.get("name")), _text(item.get("value"))]
            for item in _maps(snapshot.get("config"))]
    return ('<h2 id="config-heading" tabindex="-1">Configuration</h2>'
            '<p class="hint">Secrets are masked.</p>'
            + _table("Configuration summary", ["Setting", "Value"], rows,
                     "No configuration summary."))


def nodes_section(snapshot: Snapshot) -> str:
    token = str(snapshot.get("csrf_token") or "")
    nodes = _maps(snapshot.get("nodes"))
    body = "".join(_node(node, token) for node in nodes) or \
        '<p class="empty">No PACS node is configured.</p>'
    return '<h2 id="nodes-heading" tabindex="-1">PACS nodes</h2>' + body


def _node(node: Mapping[str, object], token: str) -> str:
    name = str(node.get("name") or "")
    heading_id = f"node-{name}"
    echo = node.get("echo")
    associations = _map(node.get("associations"))
    facts = _facts([
        ("Health", f'{_badge(node.get("health"))} '
                   f'<span class="health-message">{_text(node.get("health_message"))}</span>'),
        ("Called AE", f'{_text(node.get("ae_title"))} at {_text(node.get("host"))}:'
                      f'{_text(node.get("port"))}'),
        ("Calling AE", _text(node.get("calling_ae"))),
        ("Retrieve by", _text(node.get("retrieve"))),
        ("Associations open", f'<span class="num">{_count(associations.get("open"))} of '
                              f'{_count(associations.get("max"))}</span>'),
        ("Last C-ECHO", _echo(echo)),
    ])
    echo_form = _action(f"admin/pacs/{_path(name)}/echo", token, f"echo-{name}",
                        f"Run C-ECHO on {name}", "Run C-ECHO")
    return (f'<article class="node" aria-labelledby="{_e(heading_id)}">'
            f'<h3 id="{_e(heading_id)}">{_text(name)}</h3>{facts}{echo_form}'
            + _doctor(node.get("doctor"), name)
            + _operations(node.get("operations_per_minute"), name)
            + _failures(node.get("failures"), name)
            + "</article>")


def _echo(value: object) -> str:
    if not isinstance(value, Mapping):
        return "never run"
    outcome = "answered" if value.get("ok") else "failed"
    milliseconds = _number(value.get("milliseconds"))
    timing = f" in {milliseconds:.0f} ms" if milliseconds is not None and value.get("ok") else ""
    return (f"{outcome}{timing} at {_time(value.get('at'))}: "
            f'<span class="echo-message">{_text(value.get("message"))}</span>')


def _doctor(value: object, name: str) -> str:
    title = "<h4>Doctor findings</h4>"
    if not isinstance(value, Mapping):
        return title + (f'<p class="empty">No findings: run <code>dicomweb-gw doctor --node '
                        f"{_e(name)}</code>.</p>")
    rows = [[_text(f.get("check")), _text(f.get("outcome")), _text(f.get("meaning")),
             _text(f.get("setting"))]
            for f in _maps(value.get("findings"))]
    return (title + f'<p class="hint">Probed at {_time(value.get("at"))}.</p>'
            + _table(f"Doctor findings for {name}", ["Check", "Outcome", "Meaning", "Setting"],
                     rows, "The doctor found nothing to report."))


def _operations(value: object, name: str) -> str:
    rows = [[_text(op.get("operation")), _text(op.get("outcome")),
             f'<span class="num">{_count(op.get("count"))}</span>'] for op in _maps(value)]
    return ("<h4>Operations in the last minute</h4>"
            + _table(f"DIMSE operations on {name} in the last minute, by outcome",
                     ["Operation", "Outcome", "Count"], rows, "No operation in the last minute."))


def _failures(value: object, name: str) -> str:
    rows = [[_time(f.get("at")), _text(f.get("operation")),
             _status(f.get("status"), f.get("status_words")),
             _text(f.get("message")), _text(f.get("fix"))]
            for f in _maps(value)[:10]]
    return ("<h4>Last failures</h4>"
            + _table(f"Last failures on {name}, newest first",
                     ["Time", "Operation", "Status", "Message", "Fix"], rows, "No failure."))


def _status(code: object, words: object) -> str:
    """``0xA801 Move destination unknown``; a failure without a DIMSE status (no
    association) has only words."""
    shown = f"<code>{_e(code)}</code> " if code else ""
    return shown + _text(words)


def _retrieve_target(retrieve: Mapping[str, object], ident: str) -> str:
    """``study 1.2.3``, ``series 1.2.3.4`` or ``instance ...``: what the retrieve fetches,
    named by its own UID (the deepest one given)."""
    for kind in ("instance", "series", "study"):
        uid = retrieve.get(kind)
        if uid:
            return f"{kind} {uid}"
    return f"retrieve {ident}"


def retrieves_section(snapshot: Snapshot) -> str:
    token = str(snapshot.get("csrf_token") or "")
    rows = []
    for retrieve in _maps(snapshot.get("retrieves")):
        ident = str(retrieve.get("id") or "")
        node, level = retrieve.get("node"), retrieve.get("level")
        uids = [f'<span class="uid">{_e(kind)} {_e(uid)}</span>' for kind, uid in
                (("study", retrieve.get("study")), ("series", retrieve.get("series")),
                 ("instance", retrieve.get("instance"))) if uid]
        target = _retrieve_target(retrieve, ident)
        rate = _number(retrieve.get("mb_per_second"))
        kind = " (prefetch)" if retrieve.get("prefetch") else ""
        rows.append([
            _text(node), _text(level) + _e(kind), "<br>".join(uids) or MISSING,
            _progress(retrieve.get("received"), retrieve.get("expected"),
                      f"Instances received for {target}"),
            _bytes(retrieve.get("bytes")),
            MISSING if rate is None else f'<span class="num">{rate:.1f}</span>',
            _duration(retrieve.get("age_seconds")),
            _count(retrieve.get("waiters")),
            _action(f"admin/retrieves/{_path(ident)}/cancel", token, f"cancel-{ident}",
                    f"Cancel the retrieve of {target} from {node}", "Cancel"),
        ])
    return ('<h2 id="retrieves-heading" tabindex="-1">Retrieves in flight</h2>'
            + _table("Retrieves in flight", ["Node", "Level", "UIDs", "Instances received",
                                             "Received", "MB/s", "Age", "Waiting requests",
                                             "Action"],
                     rows, "No retrieve in flight."))


def cache_section(snapshot: Snapshot) -> str:
    token = str(snapshot.get("csrf_token") or "")
    cache = _map(snapshot.get("cache"))
    used, bound = _number(cache.get("bytes")), _number(cache.get("max_bytes"))
    size = f"{_bytes(used)} of {_bytes(bound)}"
    if used is not None and bound:
        size = (f'<progress max="{bound:g}" value="{min(used, bound):g}" '
                f'aria-label="Cache size: {_e(size)}"></progress> {size}')
    facts = _facts([
        ("Size", size),
        ("Studies", _count(cache.get("studies"))
         + (f' ({_count(cache.get("instances"))} instances)' if "instances" in cache else "")),
        ("Hit rate", f'{_percent(cache.get("hit_rate"))} '
                     f'({_count(cache.get("hits"))} hits, {_count(cache.get("misses"))} misses)'),
        ("Evictions", _count(cache.get("evictions"))),
    ])
    rows = []
    for study in _maps(cache.get("largest_studies")):
        uid, node = str(study.get("study") or ""), str(study.get("node") or "")
        rows.append([
            f'<span class="uid">{_text(uid)}</span>', _text(node), _bytes(study.get("bytes")),
            _count(study.get("instances")),
            _action(f"admin/cache/studies/{_path(uid)}/purge?{urlencode({'pacs': node})}",
                    token, f"purge-{node}-{uid}", f"Purge study {uid} from the cache of {node}",
                    "Purge", fields={"pacs": node},
                    confirm=f"Purge study {uid} from the cache of {node}? The next request "
                            "for it retrieves it from the PACS again."),
        ])
    return ('<h2 id="cache-heading" tabindex="-1">Cache</h2>' + facts
            + "<h3>Largest studies</h3>"
            + _table("Largest studies in the cache", ["Study", "Node", "Size", "Instances",
                                                      "Action"],
                     rows, "The cache is empty."))


def cluster_section(snapshot: Snapshot) -> str:
    cluster = snapshot.get("cluster")
    if not isinstance(cluster, Mapping):
        return ""
    redis, store = _map(cluster.get("redis")), _map(cluster.get("shared_store"))
    facts = _facts([
        ("Redis", f'{_text(redis.get("url"))}: '
                  f'{_yes_no(redis.get("reachable"), "reachable", "unreachable")}'),
        ("Shared store", f'{_text(store.get("url"))}: '
                         f'{_yes_no(store.get("reachable"), "reachable", "unreachable")}'),
    ])
    rows = [[_text(replica.get("id")) + (" (this one)" if replica.get("self") else ""),
             _time(replica.get("last_heartbeat")), _duration(replica.get("age_seconds"))]
            for replica in _maps(cluster.get("replicas"))]
    return ('<h2 id="cluster-heading" tabindex="-1">Cluster</h2>' + facts
            + _table("Replicas seen through Redis", ["Replica", "Last heartbeat", "Age"], rows,
                     "No replica has sent a heartbeat."))


#: Section id → renderer; ``page.html`` has a ``$name`` slot for each, and
#: ``page.js`` redraws the elements marked ``data-section`` by id.
SECTIONS: dict[str, Callable[[Snapshot], str]] = {
    "auth_warning": auth_warning,
    "gateway": gateway_section,
    "nodes": nodes_section,
    "retrieves": retrieves_section,
    "cache": cache_section,
    "cluster": cluster_section,
    "config": config_section,
}


@functools.cache
def _template() -> string.Template:
    source = resources.files("dicomweb_gw.http").joinpath("status_assets/page.html")
    return string.Template(source.read_text(encoding="utf-8"))


def render_page(snapshot: Snapshot) -> str:
    """The whole page for ``snapshot``."""
    values = {name: render(snapshot) for name, render in SECTIONS.items()}
    return _template().substitute(csrf_token=_e(snapshot.get("csrf_token") or ""), **values)
