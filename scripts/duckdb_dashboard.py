"""The reference side of the query benchmark: the same dashboard questions, asked of
DuckDB over the raw events footfall-querybench exported as CSV.

Usage: duckdb_dashboard.py EVENTS.csv --first-day N --days N --runs N --page P --country C

Prints one JSON object: load seconds, the median warm time of each dashboard (ms) and
per question, and the unfiltered aggregate, which the benchmark compares with its own.

Each dashboard is asked twice: with visits computed from the events by each query, and
with a visits table built once after loading (its build time is reported).

Semantics are Footfall's (SPEC §3): a visit's attributes come from its first event, its
entry page is its first pageview, a bounce is a visit with exactly one counting event,
duration is last minus first event time. Visits and daily visitor ids come from the
export, as a raw-events table in any analytics store would hold them.
"""

import argparse
import json
import statistics
import time

import duckdb

ATTRS = ["source", "country", "browser", "os", "device"]


VISITS = """
        SELECT visit, any_value(visitor) AS visitor, min(ts) AS first_ts, max(ts) AS last_ts,
               sum(counting) AS counting, count(*) FILTER (WHERE kind = 0) AS pageviews, {attrs},
               arg_min(pathname, ts) FILTER (WHERE kind = 0) AS entry_page
        FROM events WHERE {where} GROUP BY visit""".replace(
    "{attrs}", ", ".join(f"arg_min({a}, ts) AS {a}" for a in ATTRS)
)

# Set by main(): whether visits come from a table built once at load.
VISITS_TABLE = False


def visits_cte(where_events: str) -> str:
    """Visits of the events in the range, with the attributes of their first event: from
    the events (per query), or from the visits table (visits never cross midnight, so
    the range selects them by their first event)."""
    if VISITS_TABLE:
        return f"v AS (SELECT * FROM visits WHERE {where_events.replace('ts', 'first_ts')})"
    return f"v AS ({VISITS.replace('{where}', where_events)})"


def dashboard(first_ms: int, last_ms: int, prev_first_ms: int, filt: dict) -> list:
    """(name, sql) for each question. `filt` is None, {'page': P} or {'country': C}."""
    def rng(a, b):
        return f"ts >= {a} AND ts < {b}"

    def selected(a, b):
        # The selected events (never engagement events) and their visits.
        base = f"{rng(a, b)} AND kind <> 2"
        if filt is None:
            return visits_cte(rng(a, b)) + f", s AS (SELECT e.* FROM events e WHERE {base})"
        if "page" in filt:
            return visits_cte(rng(a, b)) + f", s AS (SELECT e.* FROM events e WHERE {base} AND pathname = '{filt['page']}')"
        return visits_cte(rng(a, b)) + (
            f", s AS (SELECT e.* FROM events e JOIN v USING (visit) WHERE {base.replace('ts', 'e.ts')}"
            f" AND v.country = '{filt['country']}')"
        )

    def aggregate(a, b):
        return f"""WITH {selected(a, b)},
            sv AS (SELECT DISTINCT visit FROM s)
            SELECT (SELECT count(DISTINCT visitor) FROM s) AS visitors,
                   (SELECT count(*) FROM sv) AS visits,
                   (SELECT count(*) FILTER (WHERE kind = 0) FROM s) AS pageviews,
                   (SELECT count(*) FILTER (WHERE kind = 0) FROM s) / nullif((SELECT count(*) FROM sv), 0) AS views_per_visit,
                   (SELECT 100.0 * avg((counting = 1)::int) FROM v JOIN sv USING (visit)) AS bounce_rate,
                   (SELECT avg(last_ts - first_ts) / 1000.0 FROM v JOIN sv USING (visit)) AS visit_duration"""

    def by_visit(attr):
        return f"""WITH {selected(first_ms, last_ms)}
            SELECT v.{attr} AS value, count(DISTINCT s.visitor) AS visitors
            FROM s JOIN v USING (visit) GROUP BY 1 ORDER BY 2 DESC"""

    if VISITS_TABLE and (filt is None or "country" in filt):
        # Questions about whole visits read the visits table alone, as a sessions table
        # would be read: no join with the events.
        where = "" if filt is None else f" AND country = '{filt['country']}'"

        def visits_only(a, b):
            return f"FROM visits WHERE first_ts >= {a} AND first_ts < {b}{where}"

        def aggregate_v(a, b):
            return f"""SELECT count(DISTINCT visitor), count(*), sum(pageviews), sum(pageviews) / nullif(count(*), 0),
                100.0 * avg((counting = 1)::int), avg(last_ts - first_ts) / 1000.0 {visits_only(a, b)}"""

        def by_visit_v(attr):
            return f"SELECT {attr}, count(DISTINCT visitor) {visits_only(first_ms, last_ms)} GROUP BY 1 ORDER BY 2 DESC"

        top_pages = (
            f"""WITH {selected(first_ms, last_ms)} SELECT pathname, count(DISTINCT visitor), count(*) FILTER (WHERE kind = 0)
                FROM s GROUP BY 1 ORDER BY 2 DESC"""
        )
        return [
            ("aggregate", aggregate_v(first_ms, last_ms)),
            ("aggregate (previous period)", aggregate_v(prev_first_ms, first_ms)),
            ("timeseries", f"SELECT first_ts // 86400000, count(DISTINCT visitor), sum(pageviews) {visits_only(first_ms, last_ms)} GROUP BY 1 ORDER BY 1"),
            ("top pages", top_pages),
            ("entry pages", by_visit_v("entry_page")),
            ("sources", by_visit_v("source")),
            ("countries", by_visit_v("country")),
            ("browsers", by_visit_v("browser")),
            ("os", by_visit_v("os")),
            ("devices", by_visit_v("device")),
        ]

    return [
        ("aggregate", aggregate(first_ms, last_ms)),
        ("aggregate (previous period)", aggregate(prev_first_ms, first_ms)),
        ("timeseries", f"""WITH {selected(first_ms, last_ms)}
            SELECT ts // 86400000 AS day, count(DISTINCT visitor), count(*) FILTER (WHERE kind = 0)
            FROM s GROUP BY 1 ORDER BY 1"""),
        ("top pages", f"""WITH {selected(first_ms, last_ms)}
            SELECT pathname, count(DISTINCT visitor) AS visitors, count(*) FILTER (WHERE kind = 0)
            FROM s GROUP BY 1 ORDER BY 2 DESC"""),
        ("entry pages", by_visit("entry_page")),
        ("sources", by_visit("source")),
        ("countries", by_visit("country")),
        ("browsers", by_visit("browser")),
        ("os", by_visit("os")),
        ("devices", by_visit("device")),
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("csv")
    p.add_argument("--first-day", type=int, required=True)
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--page", required=True)
    p.add_argument("--country", required=True)
    a = p.parse_args()

    global VISITS_TABLE
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_csv('{a.csv}', header = true)")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    con.execute("CREATE TABLE visits AS " + VISITS.replace("{where}", "true"))
    visits_s = time.perf_counter() - t

    day_ms = 86_400_000
    first_ms = a.first_day * day_ms
    last_ms = (a.first_day + a.days) * day_ms
    prev_first_ms = (a.first_day - a.days) * day_ms
    out = {"load_s": load_s, "visits_table_s": visits_s, "dashboards": {}}
    for mode, label, filt, runs in [
        (m, label, filt, runs)
        for m in ("events", "visits table")
        for label, filt, runs in [
            ("unfiltered", None, a.runs),
            ("filtered by page", {"page": a.page}, min(a.runs, 3)),
            ("filtered by country", {"country": a.country}, min(a.runs, 3)),
        ]
    ]:
        VISITS_TABLE = mode == "visits table"
        questions = dashboard(first_ms, last_ms, prev_first_ms, filt)
        totals, per = [], {name: [] for name, _ in questions}
        for run in range(runs + 1):
            started = time.perf_counter()
            for name, sql in questions:
                q = time.perf_counter()
                rows = con.execute(sql).fetchall()
                per[name].append((time.perf_counter() - q) * 1000)
                if run == 0 and name == "aggregate" and filt is None:
                    out.setdefault("aggregate", {})[mode] = [float(x) if x is not None else None for x in rows[0]]
            # The first run warms DuckDB's caches and is not counted, as on Footfall's side.
            if run > 0:
                totals.append((time.perf_counter() - started) * 1000)
            else:
                for name in per:
                    per[name].clear()
        out["dashboards"][f"{label} ({mode})"] = {
            "median_ms": statistics.median(totals),
            "per_query": {name: statistics.median(v) for name, v in per.items()},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
