"""Import contacts into the built-in CRM from a CSV file, with a report of rejected rows.

Columns are found by header (case-insensitive, English or Russian): name, company, email,
tags, note, and any number of phone columns (`phone`, `phone2`, `mobile`, `tel`, `телефон`);
a phone cell may hold several numbers separated by `;` or `,`. Comma, semicolon and tab
delimited files are recognised; a UTF-8 BOM (Excel) is fine.

A row is rejected, with its line and the reason, when its name is missing, it has no
number, a number cannot be read, or a number already belongs to an earlier row or to a
contact in the database (duplicates are left for a person to decide). Rows are written
in batches, one transaction each.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select

from crm_adapters.builtin import BuiltinCrm, company_id_for
from crm_adapters.builtin_tables import CONTACTS, INTERACTIONS, PHONES
from crm_adapters.contract import utc_now
from crm_adapters.phone_numbers import normalize

NAME_HEADERS = {"name", "display_name", "display name", "full name", "full_name", "contact", "фио", "имя"}
COMPANY_HEADERS = {"company", "organization", "organisation", "компания", "организация"}
EMAIL_HEADERS = {"email", "e-mail", "mail", "почта"}
TAGS_HEADERS = {"tags", "tag", "теги", "метки"}
NOTE_HEADERS = {"note", "notes", "comment", "примечание", "комментарий"}
PHONE_PREFIXES = ("phone", "tel", "mobile", "телефон", "тел")
_SPLIT_NUMBERS = re.compile(r"[;,/]")
_SPLIT_TAGS = re.compile(r"[;,|]")
_IN_CHUNK = 500


class CsvFormatError(ValueError):
    """The file as a whole cannot be imported (no header, no name or phone column)."""


@dataclass(frozen=True)
class Rejection:
    line: int  # the line the row starts on (the header is line 1)
    reason: str
    row: dict[str, str]


@dataclass
class ImportReport:
    imported: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def summary(self) -> str:
        return f"imported {self.imported} contacts, rejected {len(self.rejected)} rows"


@dataclass
class _Row:
    line: int
    raw: dict[str, str]
    name: str
    phones: list[str]
    company: str | None
    email: str | None
    tags: list[str]
    note: str | None


@dataclass
class _Columns:
    name: str
    phones: list[str]
    company: str | None = None
    email: str | None = None
    tags: str | None = None
    note: str | None = None

    @classmethod
    def from_header(cls, header: list[str]) -> _Columns:
        def find(names: set[str]) -> str | None:
            return next((h for h in header if h.strip().casefold() in names), None)

        name = find(NAME_HEADERS)
        phones = [h for h in header if h.strip().casefold().startswith(PHONE_PREFIXES)]
        if name is None or not phones:
            raise CsvFormatError(
                f"the header needs a name column and a phone column, found: {', '.join(header) or 'nothing'}")
        return cls(name, phones, find(COMPANY_HEADERS), find(EMAIL_HEADERS), find(TAGS_HEADERS),
                   find(NOTE_HEADERS))


def _cell(row: dict[str, str | None], column: str | None) -> str:
    return (row.get(column) or "").strip() if column else ""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]] | _Columns]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        sample = handle.read(65536)
        handle.seek(0)
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(handle, dialect=dialect)
        if not reader.fieldnames:
            raise CsvFormatError(f"{path} is empty")
        yield _Columns.from_header(list(reader.fieldnames))
        line = reader.line_num + 1
        for row in reader:
            yield line, {k: (v or "") for k, v in row.items() if k is not None}
            line = reader.line_num + 1


def _parse(line: int, raw: dict[str, str], cols: _Columns, region: str) -> _Row | Rejection:
    name = _cell(raw, cols.name)
    if not name:
        return Rejection(line, "missing name", raw)
    numbers = [n.strip() for c in cols.phones for n in _SPLIT_NUMBERS.split(_cell(raw, c)) if n.strip()]
    if not numbers:
        return Rejection(line, "no phone number", raw)
    phones, bad = [], []
    for number in numbers:
        e164 = normalize(number, region)
        (phones if e164 else bad).append(e164 or number)
    if bad:
        return Rejection(line, "bad number " + ", ".join(repr(b) for b in bad), raw)
    tags = [t.strip() for t in _SPLIT_TAGS.split(_cell(raw, cols.tags)) if t.strip()]
    return _Row(line, raw, name, list(dict.fromkeys(phones)), _cell(raw, cols.company) or None,
                _cell(raw, cols.email) or None, tags, _cell(raw, cols.note) or None)


async def import_csv(crm: BuiltinCrm, path: Path, *, batch_size: int = 5000) -> ImportReport:
    """Import `path` into the (open) built-in CRM; returns what was imported and rejected."""
    report = ImportReport()
    seen: dict[str, int] = {}  # number -> line of the row that has it
    batch: list[_Row] = []
    rows = _rows(path)
    cols = next(rows)
    assert isinstance(cols, _Columns)
    for item in rows:
        assert isinstance(item, tuple)
        parsed = _parse(*item, cols, crm.default_region)
        if isinstance(parsed, _Row):
            dup = next((p for p in parsed.phones if p in seen), None)
            if dup is not None:
                parsed = Rejection(parsed.line, f"duplicate number {dup} (line {seen[dup]})", parsed.raw)
            else:
                seen.update(dict.fromkeys(parsed.phones, parsed.line))
        if isinstance(parsed, Rejection):
            report.rejected.append(parsed)
            continue
        batch.append(parsed)
        if len(batch) >= batch_size:
            await _write(crm, batch, report)
            batch = []
    if batch:
        await _write(crm, batch, report)
    report.rejected.sort(key=lambda r: r.line)
    return report


async def _write(crm: BuiltinCrm, batch: list[_Row], report: ImportReport) -> None:
    now = utc_now()
    async with crm.engine.begin() as conn:
        numbers = sorted({p for row in batch for p in row.phones})
        owners: dict[str, int] = {}
        for start in range(0, len(numbers), _IN_CHUNK):
            found = await conn.execute(select(PHONES.c.e164, PHONES.c.contact_id)
                                       .where(PHONES.c.e164.in_(numbers[start:start + _IN_CHUNK])))
            owners.update({e164: cid for e164, cid in found})
        accepted = []
        for row in batch:
            taken = next((p for p in row.phones if p in owners), None)
            if taken is None:
                accepted.append(row)
            else:
                reason = f"duplicate number {taken} (contact {owners[taken]} in the database)"
                report.rejected.append(Rejection(row.line, reason, row.raw))
        if not accepted:
            return
        companies: dict[str, int] = {}
        contacts = []
        for row in accepted:
            company_id = await company_id_for(conn, row.company, now, companies)
            contacts.append({"display_name": row.name, "company_id": company_id, "email": row.email,
                             "tags": row.tags, "created_at": now, "updated_at": now})
        stmt = insert(CONTACTS).returning(CONTACTS.c.id, sort_by_parameter_order=True)
        ids = (await conn.execute(stmt, contacts)).scalars().all()
        pairs = list(zip(ids, accepted, strict=True))
        phones = [{"contact_id": cid, "e164": p} for cid, row in pairs for p in row.phones]
        await conn.execute(insert(PHONES), phones)
        notes = [{"contact_id": cid, "kind": "note", "at": now, "summary": row.note}
                 for cid, row in pairs if row.note]
        if notes:
            await conn.execute(insert(INTERACTIONS), notes)
    report.imported += len(accepted)


def write_rejections(report: ImportReport, path: Path) -> None:
    """The rejected rows as CSV (line, reason, then the row's own columns), to fix and re-import."""
    columns: list[str] = []
    for rejection in report.rejected:
        columns.extend(c for c in rejection.row if c not in columns)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["line", "reason", *columns])
        writer.writeheader()
        for r in report.rejected:
            writer.writerow({"line": r.line, "reason": r.reason, **r.row})
