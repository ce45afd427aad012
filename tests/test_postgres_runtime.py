"""The whole loop on PostgreSQL, as a clinic deploys it (DATABASE_URL): a patient's emergency
is stored and answered, a case opens, a doctor claims it, writes and closes it, the patient's
/forget keeps the clinical record, the retention pass and the audit chain hold."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.cases.models import Actor
from bot.models import IncomingMessage, TriageLevel
from bot.storage.audit_chain import verify
from bot.storage.retention import Retention
from bot.storage.tables import ErasureRequest, Escalation, Message
from tests.conftest import RuntimeFactory
from tests.servers import PostgresServer


async def test_an_emergency_case_from_message_to_forget_on_postgresql(
    make_runtime: RuntimeFactory, postgres_server: PostgresServer
) -> None:
    rt = await make_runtime(database_url=postgres_server.fresh_database(), db_pool_size=3)
    assert rt.storage.engine.dialect.name == "postgresql"
    assert rt.storage.engine.pool.size() == 3  # type: ignore[attr-defined]
    msg = IncomingMessage(
        channel="telegram",
        chat_id="801",
        user_id="801",
        message_id="1",
        text="crushing chest pain and sweating",
        consent=True,
    )
    reply = await rt.engine.handle(msg)
    assert reply.level is TriageLevel.EMERGENCY and "112" in reply.text
    assert (await rt.engine.handle(msg)).text == reply.text  # a repeat is answered once
    (case,) = await rt.cases.store.queue()
    doctor = Actor(name="Dr Ada", staff_id=1)
    outcome, _ = await rt.cases.claim(case.id, doctor)
    assert outcome.value == "claimed"
    await rt.cases.store.record_doctor_message(case.id, doctor, "Go to the emergency room.")
    assert await rt.cases.resolve(case.id, doctor, "sent to ED") is not None

    forgot = await rt.engine.forget(msg.model_copy(update={"message_id": "2", "text": "/forget"}))
    assert "medical record" in forgot.text
    await Retention(rt.storage, days=365, record_days=3650).purge()
    with Session(rt.storage.engine) as s:
        assert s.exec(select(Escalation)).one().outcome == "sent to ED"
        texts = [m.text for m in s.exec(select(Message))]
        assert "Go to the emergency room." in texts
        assert s.exec(select(ErasureRequest)).one().status == "pending"
        verdict = verify(s)
    assert verdict.ok and verdict.checked > 5, verdict.reason
