"""The audit log is tamper-evident: events are chained by hash, `carebot audit verify` finds
an event removed or changed (but not details emptied on purpose), `export` copies it out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from bot.storage.audit_chain import verify
from bot.storage.migrate import upgrade
from bot.storage.repository import Storage, audit_event, make_engine


def write_events(storage: Storage, n: int, start: int = 0) -> None:
    def work(s: Session) -> None:
        for i in range(start, start + n):
            s.add(audit_event(f"staff:{i % 3}", "case.read", "escalation_read", str(i), via="page"))
            if i % 4 == 0:
                s.commit()  # several transactions, several flushes
        s.commit()

    storage.engine.dispose()
    with Session(storage.engine) as s:
        work(s)


def fresh(tmp_path: Path) -> Storage:
    storage = Storage(make_engine(f"sqlite:///{tmp_path / 'carebot.db'}"))
    upgrade(storage.engine)
    return storage


def verdict(storage: Storage):  # type: ignore[no-untyped-def]
    with Session(storage.engine) as s:
        return verify(s)


def sql(storage: Storage, statement: str) -> None:
    with storage.engine.begin() as conn:
        conn.execute(text(statement))


def test_events_are_chained_and_verify(tmp_path: Path) -> None:
    storage = fresh(tmp_path)
    write_events(storage, 10)
    write_events(storage, 5, start=10)
    found = verdict(storage)
    assert found.ok and found.checked == 15 and found.unchained == 0


def test_a_removed_or_changed_event_breaks_the_chain_where_it_happened(tmp_path: Path) -> None:
    storage = fresh(tmp_path)
    write_events(storage, 12)
    sql(storage, "DELETE FROM audit_events WHERE id = 5")  # a read hidden after the fact
    found = verdict(storage)
    assert not found.ok and found.broken_at == 6 and "removed or changed" in found.reason

    storage = fresh(tmp_path / "b")
    write_events(storage, 12)
    sql(storage, "UPDATE audit_events SET actor = 'staff:99' WHERE id = 7")  # someone else
    assert verdict(storage).broken_at == 7
    sql(storage, "UPDATE audit_events SET actor = 'staff:0' WHERE id = 7")  # put back
    assert verdict(storage).ok

    storage = fresh(tmp_path / "c")
    write_events(storage, 12)
    sql(storage, "DELETE FROM audit_events WHERE id > 9")  # the newest, gone
    found = verdict(storage)
    assert not found.ok and "newest events were removed" in found.reason


def test_concurrent_writers_keep_one_chain(database_url: str) -> None:
    # Eight connections appending at once (a server database's pool): the head row is locked
    # while an event links to it, so no two events take the same predecessor.
    from concurrent.futures import ThreadPoolExecutor

    storage = Storage(make_engine(database_url))
    upgrade(storage.engine)

    def writer(n: int) -> None:
        for i in range(15):
            with Session(storage.engine) as s:
                s.add(audit_event(f"staff:{n}", "case.read", "escalation_read", str(i)))
                s.commit()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    found = verdict(storage)
    storage.engine.dispose()
    assert found.ok and found.checked == 120, found.reason


def test_details_emptied_on_purpose_still_verify_but_altered_ones_do_not(tmp_path: Path) -> None:
    storage = fresh(tmp_path)
    write_events(storage, 6)
    sql(storage, "UPDATE audit_events SET details = '{}' WHERE id = 2")  # retention
    assert verdict(storage).ok
    sql(storage, """UPDATE audit_events SET details = '{"via": "stream"}' WHERE id = 3""")
    found = verdict(storage)
    assert found.broken_at == 3 and "details were changed" in found.reason


def test_the_command_line_verifies_and_exports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    storage = Storage(make_engine(f"sqlite:///{data / 'carebot.db'}"))
    upgrade(storage.engine)
    write_events(storage, 4)
    storage.engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREBOT_")}
    env["CAREBOT_DATA_DIR"] = str(data)

    def carebot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    ok = carebot("audit", "verify")
    assert ok.returncode == 0 and "audit chain intact: 4 events" in ok.stdout
    lines = [
        json.loads(line)
        for line in carebot("audit", "export", "--after", "1").stdout.split("\n")
        if line
    ]
    assert [e["id"] for e in lines] == [2, 3, 4]
    assert all(len(e["chain_hash"]) == 64 and e["details"] == {"via": "page"} for e in lines)
    private = carebot("audit", "export", "--no-details").stdout
    assert 'details"' not in private.replace("details_digest", "")
    sql(storage, "DELETE FROM audit_events WHERE id = 2")
    broken = carebot("audit", "verify")
    assert broken.returncode == 1 and "BROKEN at event 3" in broken.stderr
