"""Built-in CRM lookup latency at 1,000,000 contacts (goal: under 1 ms).

Generates the data itself (bulk inserts, a couple of minutes for 1M contacts on SQLite):
contacts with one or two mobile numbers, companies, and a few numbers shared by several
contacts; then times caller lookups, 90% hits and 10% misses, one at a time:
- `BuiltinCrm.find_contact` (what the lookup service asks on a cache miss),
- `LookupService.lookup` on distinct numbers (normalisation + single-flight + the above),
- `LookupService.lookup` served from its cache,
- the same SQL through the stdlib sqlite3 driver (the database's share, SQLite only).

    python bench/crm_lookup.py [--contacts 1000000] [--lookups 20000] [--keep FILE]
    python bench/crm_lookup.py --db postgresql+asyncpg://user:pw@host/db --schema crm_bench

`--keep FILE` keeps (and reuses, if it already holds the contacts) the SQLite database;
on PostgreSQL the data goes to `--schema` (created if missing, kept for the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import create_async_engine

from crm_adapters.builtin import _BY_NUMBER, BuiltinCrm
from crm_adapters.builtin_tables import COMPANIES, CONTACTS, PHONES
from crm_adapters.lookup import LookupService
from crm_adapters.settings import CrmSettings

BATCH = 50_000
FIRST = ["Александр", "Мария", "Иван", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена", "Olga", "John"]
LAST = ["Иванов", "Смирнова", "Кузнецов", "Попова", "Соколов", "Лебедева", "Новиков", "Smith"]


def numbers_for(count: int, rng: random.Random) -> list[str]:
    """Distinct valid Russian mobile numbers (+79XXXXXXXXX)."""
    return [f"+79{n:09d}" for n in rng.sample(range(10**9), count)]


async def generate(crm: BuiltinCrm, contacts: int, rng: random.Random) -> tuple[list[str], float]:
    started = time.perf_counter()
    second = contacts // 2  # half the contacts have a second number
    shared = min(1000, contacts // 100)  # numbers shared by two contacts (the "several matches" case)
    numbers = numbers_for(contacts + second + 1, rng)
    now = datetime.now(UTC)
    async with crm.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            await conn.exec_driver_sql("PRAGMA synchronous=OFF")
        companies = max(1, contacts // 100)
        await conn.execute(insert(COMPANIES), [{"id": i + 1, "name": f"ООО «Компания {i + 1}»",
                                                "created_at": now} for i in range(companies)])
    phone_id = 0
    for start in range(0, contacts, BATCH):
        ids = range(start + 1, min(start + BATCH, contacts) + 1)
        rows = [{"id": i, "display_name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {i}",
                 "company_id": rng.randint(1, companies) if i % 3 else None, "email": f"c{i}@example.ru",
                 "tags": ["VIP"] if i % 50 == 0 else [], "created_at": now,
                 "updated_at": now - timedelta(seconds=rng.randint(0, 10**7))} for i in ids]
        phones = []
        for i in ids:
            mine = [numbers[i - 1]] + ([numbers[contacts + i // 2]] if i % 2 == 0 else [])
            if i <= shared:  # also the number of contact i + shared
                mine.append(numbers[i + shared - 1])
            for e164 in dict.fromkeys(mine):
                phone_id += 1
                phones.append({"id": phone_id, "contact_id": i, "e164": e164, "label": "mobile"})
        async with crm.engine.begin() as conn:
            await conn.execute(insert(CONTACTS), rows)
            await conn.execute(insert(PHONES), phones)
        print(f"\r  generated {ids[-1]:,} contacts, {phone_id:,} numbers", end="", flush=True)
    async with crm.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("ANALYZE")
        else:
            await conn.exec_driver_sql("ANALYZE crm_phones")
            await conn.exec_driver_sql("ANALYZE crm_contacts")
    print()
    return numbers[: contacts + second], time.perf_counter() - started


async def sample_numbers(crm: BuiltinCrm, count: int, rng: random.Random) -> list[str]:
    async with crm.engine.connect() as conn:
        total = (await conn.execute(select(func.max(PHONES.c.id)))).scalar_one()
        ids = rng.sample(range(1, total + 1), min(count, total))
        found: list[str] = []
        for start in range(0, len(ids), 500):
            found += (await conn.execute(select(PHONES.c.e164).where(PHONES.c.id.in_(ids[start:start + 500])))
                      ).scalars().all()
    return found


def figures(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    print(f"  {name:<44} p50 {q[49]:6.3f} ms  p90 {q[89]:6.3f}  p99 {q[98]:6.3f}  max {ms[-1]:7.3f}"
          f"  mean {statistics.fmean(ms):6.3f}  ({len(ms):,} lookups)")


async def timed(call: Callable[[str], Awaitable[Any]], numbers: list[str]) -> list[float]:
    samples = []
    for number in numbers:
        start = time.perf_counter()
        await call(number)
        samples.append(time.perf_counter() - start)
    return samples


def sqlite_query() -> tuple[str, Callable[[str], tuple[Any, ...]]]:
    """The lookup's SQL for SQLite, and its positional parameters for a number."""
    compiled = _BY_NUMBER.compile(dialect=sqlite_dialect.dialect())
    names, values = compiled.positiontup or [], compiled.params
    return str(compiled), lambda number: tuple(number if n == "number" else values[n] for n in names)


def stdlib_sqlite(path: str, numbers: list[str]) -> list[float]:
    sql, params = sqlite_query()
    db = sqlite3.connect(path)
    samples = []
    for number in numbers:
        start = time.perf_counter()
        db.execute(sql, params(number)).fetchall()
        samples.append(time.perf_counter() - start)
    db.close()
    return samples


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    tmp = tempfile.TemporaryDirectory()
    path = args.keep or Path(tmp.name) / "crm.sqlite3"
    url = args.db or f"sqlite+aiosqlite:///{path}"
    options: dict[str, Any] = {}
    if args.db and args.db.startswith("postgresql"):
        admin = create_async_engine(args.db)
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{args.schema}"')
        await admin.dispose()
        options["connect_args"] = {"server_settings": {"search_path": args.schema}}
    crm = BuiltinCrm(url, **options)
    await crm.open()
    try:
        async with crm.engine.connect() as conn:
            have = (await conn.execute(select(func.count()).select_from(CONTACTS))).scalar_one()
        if have == 0:
            print(f"generating {args.contacts:,} contacts in {crm.engine.url.render_as_string()} ...")
            _, took = await generate(crm, args.contacts, rng)
            print(f"  generation: {took:.1f} s")
        elif have != args.contacts:
            raise SystemExit(f"the database holds {have:,} contacts, not {args.contacts:,}: use another "
                             "--keep file or --schema")
        async with crm.engine.connect() as conn:
            contacts = (await conn.execute(select(func.count()).select_from(CONTACTS))).scalar_one()
            phones = (await conn.execute(select(func.count()).select_from(PHONES))).scalar_one()
            if conn.dialect.name == "sqlite":
                sql, params = sqlite_query()
                plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params("+79000000000"))).all()
                print("query plan:", "; ".join(row[-1] for row in plan))
        print(f"database: {contacts:,} contacts, {phones:,} numbers")

        hits = await sample_numbers(crm, args.lookups * 9 // 10, rng)
        # Landline numbers: the generated ones are all mobiles (+79...), so these are sure misses.
        misses = [f"+7495{rng.randrange(10**7):07d}" for _ in range(args.lookups - len(hits))]
        numbers = hits + misses
        rng.shuffle(numbers)
        await timed(crm.find_contact, numbers[:1000])  # warm the pool and the page cache

        print(f"lookups ({len(hits):,} hits, {len(misses):,} misses):")
        found = 0

        async def find(number: str) -> None:
            nonlocal found
            found += await crm.find_contact(number) is not None

        figures("BuiltinCrm.find_contact", await timed(find, numbers))
        assert found == len(hits), f"{found} found of {len(hits)} hits"
        service = LookupService([crm], CrmSettings(cache={"max_entries": len(numbers) + 1}))
        national = ["8" + n[2:] for n in numbers]  # as a Russian PBX sends them
        figures("LookupService.lookup (cache miss, national)", await timed(service.lookup, national))
        figures("LookupService.lookup (cached)", await timed(service.lookup, national))
        if crm.engine.dialect.name == "sqlite" and args.db is None:
            figures("same SQL, stdlib sqlite3 (database only)", stdlib_sqlite(str(path), numbers))
    finally:
        await crm.close()
        tmp.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--keep", type=Path, help="SQLite file to keep the generated data in")
    parser.add_argument("--schema", default="crm_bench", help="PostgreSQL schema for the data")
    parser.add_argument("--seed", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
