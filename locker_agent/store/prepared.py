"""Statements compiled once and run straight on the SQLite cursor: the commit path's own.

SQLAlchemy Core builds the SQL and the type conversions (a timestamp's ISO text, a boolean's
integer) once, at start; each run then costs what ``sqlite3`` itself costs. Through a
``Connection`` every statement, however well cached, went through SQLAlchemy's execution
context, its events and its result machinery: measured, that was most of a commit's CPU time
(docs/benchmarks.md, issue 19). The statements run inside a transaction SQLAlchemy began, on
its connection, so they commit or roll back with everything else in it.

A write that fails for want of room is raised as :class:`StorageFull`, as the engine's own
statements are (``database.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from locker_agent.store.database import no_room

_DIALECT = sqlite_dialect.dialect(paramstyle="qmark")

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement's SQL and the order and conversion of its parameters."""

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(
            dialect=_DIALECT, column_keys=list(columns) if columns is not None else None
        )
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._order: list[tuple[str, Processor]] = []
        self._fixed: dict[str, Any] = {}
        """Values the statement itself carries (``id == 1``), used when none is given."""
        for name in compiled.positiontup or []:
            bind = compiled.binds[name]
            self._order.append(
                (name, bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)))
            if not bind.required:
                self._fixed[name] = bind.effective_value
        self._results: list[Processor] = [
            column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
            for column in getattr(statement, "selected_columns", ())
        ]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        fixed = self._fixed
        converted = []
        for name, process in self._order:
            value = values[name] if name in values or name not in fixed else fixed[name]
            converted.append(value if process is None or value is None else process(value))
        return tuple(converted)

    def run(self, conn: Connection, values: Mapping[str, Any]) -> sqlite3.Cursor:
        """Execute once; the cursor tells ``lastrowid``, ``rowcount`` and any rows."""
        cursor = cursor_of(conn)
        try:
            return cursor.execute(self.sql, self.parameters(values))
        except sqlite3.Error as exc:
            full = no_room(exc)
            if full is None:
                raise
            raise full from exc

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """A query's rows, each value converted as SQLAlchemy would (a timestamp's text to
        a datetime)."""
        processors = self._results
        return [
            tuple(v if p is None or v is None else p(v) for v, p in zip(row, processors,
                                                                       strict=True))
            for row in self.run(conn, values).fetchall()
        ]

    def run_many(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        cursor = cursor_of(conn)
        try:
            cursor.executemany(self.sql, [self.parameters(row) for row in rows])
        except sqlite3.Error as exc:
            full = no_room(exc)
            if full is None:
                raise
            raise full from exc


def cursor_of(conn: Connection) -> sqlite3.Cursor:
    """A cursor on the SQLite connection under ``conn``, in ``conn``'s transaction."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()
