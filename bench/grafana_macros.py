"""Grafana's PostgreSQL macros and multi-value variables, expanded as Grafana does, so dashboard
SQL can run outside Grafana (in the tests and in bench/dashboards.py)."""

from __future__ import annotations

import datetime
import re

__all__ = ["grafana_sql"]


def grafana_sql(
    sql: str, start: datetime.datetime, end: datetime.datetime, variables: dict[str, list[str]]
) -> str:
    """`sql` with ``$__timeGroupAlias``, ``$__timeFilter``, ``$__unixEpochNano*`` and ``$var``."""
    sql = re.sub(
        r"\$__timeGroupAlias\((\w+),\s*(\d+)m\)",
        lambda m: (
            f'floor(extract(epoch from {m[1]}) / {int(m[2]) * 60}) * {int(m[2]) * 60} AS "time"'
        ),
        sql,
    )
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        sql,
    )
    sql = sql.replace("$__unixEpochNanoFrom()", str(int(start.timestamp() * 1e9)))
    sql = sql.replace("$__unixEpochNanoTo()", str(int(end.timestamp() * 1e9)))
    for name, values in variables.items():
        sql = sql.replace(f"${name}", ", ".join("'" + v.replace("'", "''") + "'" for v in values))
    return sql
