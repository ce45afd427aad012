"""The doctors' side of Telegram: case alerts in the doctors' group, claims, the hand-off.

An alert per case goes to `CAREBOT_DOCTORS_CHAT_ID` with Claim / Open in dashboard buttons
and is edited as the case moves. A doctor who claims talks to the patient through the bot:
in a private chat with the bot, or by replying to the alert in the group; `/close [note]`
resolves the case. The patient's messages reach the doctor's private chat (or the alert's
thread when the doctor never started the bot, or can no longer act).

Only Telegram accounts linked to an enabled doctor's or admin's staff account act on cases
(bot/dashboard/telegram_link.py: `/link CODE` from a private chat); anyone else in the group
is told how to link, and patients see the staff account's name and role.
"""

from __future__ import annotations

import contextlib
import logging
import re
from functools import partial

from telegram import Bot, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, Forbidden, TelegramError

from bot import metrics
from bot.cases.events import CaseEvent
from bot.cases.models import Actor, CaseStatus, CaseView, ClaimOutcome
from bot.cases.service import CaseService
from bot.channels.telegram.delivery import DeliveryFailed, Sender, with_retries
from bot.config import Settings
from bot.dashboard.telegram_link import LinkRefused, TelegramLinks

logger = logging.getLogger(__name__)
LEVEL_MARK = {"emergency": "🔴 EMERGENCY", "urgent": "🟠 URGENT", "routine": "🟢 ROUTINE"}
CLAIMED_REPLIES = {
    ClaimOutcome.CLAIMED: "The case is yours. Write to me privately (or reply to the alert) "
    "to talk to the patient; /close NOTE ends it.",
    ClaimOutcome.ALREADY_YOURS: "This case is already yours.",
    ClaimOutcome.CLOSED: "This case is already closed.",
    ClaimOutcome.MISSING: "This case no longer exists.",
}

NOT_LINKED = (
    "Only doctors and admins whose CareBot staff account is linked to this Telegram account "
    "can act on cases. Link yours: dashboard → Telegram → create a code, then send me "
    "/link CODE in a private chat."
)
# Where patient text is kept out of Telegram (CAREBOT_TELEGRAM_PATIENT_TEXT=false).
NO_TEXT_HERE = "The summary and the patient's words are in the dashboard only: open the case there."
# What a blanked alert or relay says once its patient is erased (/forget, or retention).
ERASED = "[deleted: this patient's chat was erased; a kept case record is in the dashboard]"
# Above an alert that is not the case's first: a deadline passed, or the previous alert was
# refused or never confirmed (its sender died mid-send, so it may be in the group already).
ALERT_PREFIX = {
    "realerted": "⏰ Still unclaimed.\n",
    "alert_retry": "🔁 Sent again (an earlier alert for this case may not have arrived).\n",
}
HOLDER_GONE = (
    "⚠️ The staff account holding case #{case} can no longer act on it (disabled or "
    "unlinked). Another doctor or an admin can take it over in the dashboard."
)


class DoctorsDesk:
    """Alerts, claims and relays between the doctors' group, doctors' chats and patients."""

    def __init__(
        self, bot: Bot, cases: CaseService, settings: Settings, links: TelegramLinks
    ) -> None:
        self.bot, self.cases, self.settings, self.links = bot, cases, settings, links
        self.chat_id = settings.doctors_chat_id
        self._sending: set[int] = set()  # cases whose alert this process is sending now

    @property
    def _shows(self) -> bool:
        """Whether messages to doctors carry the patient's text (and so are reads on record)."""
        return self.settings.telegram_patient_text

    # --- alerts -------------------------------------------------------------------------

    def alert_text(self, view: CaseView) -> str:
        """The alert: level, age, state and the summary."""
        minutes = int(view.age_s() // 60)
        state = {
            CaseStatus.OPEN: "waiting for a doctor",
            CaseStatus.CLAIMED: f"✅ claimed by {view.claimed_by}",
            CaseStatus.RESOLVED: f"✔️ resolved by {view.claimed_by or 'a doctor'}",
            CaseStatus.EXPIRED: "⌛ expired: no doctor in time; the patient was told what to do",
        }[view.status]
        mark = LEVEL_MARK.get(view.level.value, view.level.value.upper())
        if not self.settings.telegram_patient_text:
            # Nothing of the patient's in Telegram: the dashboard shows it, and records who read.
            summary = NO_TEXT_HERE
        else:
            summary = view.summary or "Summary being written… Reasons: " + ", ".join(view.reasons)
        return f"{mark} · case #{view.id} · opened {minutes} min ago\n{state}\n\n{summary}"

    def buttons(self, view: CaseView) -> InlineKeyboardMarkup:
        """Claim (while open) and Open in dashboard."""
        row = []
        if view.status is CaseStatus.OPEN:
            row.append(InlineKeyboardButton("Claim", callback_data=f"claim:{view.id}"))
        url = f"{self.settings.dashboard_base_url}/dashboard/cases/{view.id}"
        row.append(InlineKeyboardButton("Open in dashboard", url=url))
        return InlineKeyboardMarkup([row])

    async def on_event(self, event: CaseEvent) -> None:
        """Keep the doctors' group in step with the case."""
        if event.kind == "patient":
            await self._relay_to_doctor(event)
            return
        if event.kind == "erase_messages":
            await self._blank(event.messages)
            return
        if self.chat_id is None or event.kind in ("doctor", "alert_failed"):
            return
        view = await self.cases.store.view(event.case_id)
        if view is None:
            return
        sender = Sender(self.bot, self.chat_id)
        old = await self.cases.store.alert_message(view.id)
        if event.kind in ("opened", "realerted", "alert_retry") or old is None:
            if event.kind == "alert_retry" and view.id in self._sending:
                return  # still being sent here (slow Telegram): not lost
            # A new message, so the group is notified; the previous alert loses its button.
            text = ALERT_PREFIX.get(event.kind, "") + self.alert_text(view)
            self._sending.add(view.id)
            try:
                await self.cases.alert_sending(view.id)
                sent = await sender.send(text, self.buttons(view))
            except (TelegramError, DeliveryFailed) as exc:
                # Bot removed from the group, group migrated, Telegram down: not just a log
                # line. The case is marked, retried, shown in /healthz; the patient is told.
                await self.cases.alert_failed(view.id, type(exc).__name__)
                return
            finally:
                self._sending.discard(view.id)
            # Confirmed first: whatever happens next, this alert is not sent again.
            await self.cases.store.alert_sent(view.id, sent[-1].message_id)
            if old is None:  # the case's first alert to land
                metrics.DOCTORS_ALERT.observe(view.age_s())
            await self.cases.store.sent_to_doctors(
                view.id, self.chat_id, sent, "alert", self._shows
            )
            if old is not None:  # best effort: a stale button only says "already claimed"
                with contextlib.suppress(TelegramError, DeliveryFailed):
                    await with_retries(
                        lambda: self.bot.edit_message_reply_markup(
                            chat_id=self.chat_id, message_id=old, reply_markup=None
                        )
                    )
            return
        with contextlib.suppress(BadRequest):  # "message is not modified" and the like
            await sender.edit_id(old, self.alert_text(view), self.buttons(view))
            if self._shows:
                await self.cases.store.shown_to_doctors(view.id, self.chat_id, "alert edited")

    async def _relay_to_doctor(self, event: CaseEvent) -> None:
        view = await self.cases.store.view(event.case_id)
        if view is None or view.status is not CaseStatus.CLAIMED or not event.text:
            return
        if self.settings.telegram_patient_text:
            flags = f"\n⚠️ Red flags: {', '.join(event.red_flags)}" if event.red_flags else ""
            text = f"Patient (case #{view.id}): {event.text}{flags}"
        else:
            flags = "\n⚠️ It raised a red flag." if event.red_flags else ""
            url = f"{self.settings.dashboard_base_url}/dashboard/cases/{view.id}"
            text = f"Patient (case #{view.id}) wrote again: read it in the dashboard, {url}{flags}"
        doctor = await self.links.reachable(view.claimed_by_staff_id)
        if doctor is not None:
            try:
                sent = await Sender(self.bot, doctor).send(text)
                await self.cases.store.sent_to_doctors(view.id, doctor, sent, "relay", self._shows)
                return
            except Forbidden:
                logger.info("case %s: doctor never started the bot; relaying in the group", view.id)
        elif view.claimed_by_telegram_id is not None:  # claimed in Telegram; holder gone since
            text += "\n" + HOLDER_GONE.format(case=view.id)
        if self.chat_id is not None:
            alert = await self.cases.store.alert_message(view.id)
            sent = await Sender(self.bot, self.chat_id, reply_to=alert).send(text)
            await self.cases.store.sent_to_doctors(
                view.id, self.chat_id, sent, "relay", self._shows
            )

    async def _blank(self, messages: list[tuple[int, int]]) -> None:
        """Replace the bot's messages about an erased patient with ERASED, buttons gone.

        A message Telegram will not edit any more (deleted by someone, a chat the bot has
        left) stays as it is: logged by count, never by content.
        """
        failed = 0
        for chat_id, message_id in messages:
            try:
                await with_retries(partial(self._blank_one, chat_id, message_id))
            except TelegramError:
                failed += 1
        if failed:
            logger.warning("erasure: %d of %d doctors' messages not blanked", failed, len(messages))

    async def _blank_one(self, chat_id: int, message_id: int) -> object:
        return await self.bot.edit_message_text(
            ERASED, chat_id=chat_id, message_id=message_id, reply_markup=None
        )

    # --- doctors' actions ---------------------------------------------------------------

    async def group_callback(self, query: CallbackQuery) -> None:
        """A button pressed in the doctors' group."""
        action, _, value = (query.data or "").partition(":")
        case_id = case_number(value)
        if action != "claim" or case_id is None:
            with contextlib.suppress(BadRequest):
                await with_retries(query.answer)
            return
        actor = await self.links.actor(query.from_user.id)
        if actor is None:
            with contextlib.suppress(BadRequest):
                await with_retries(lambda: query.answer(NOT_LINKED, show_alert=True))
            return
        outcome, view = await self.cases.claim(case_id, actor)
        if outcome is ClaimOutcome.TAKEN and view is not None:
            answer = f"Already claimed by {view.claimed_by}."
        else:
            answer = CLAIMED_REPLIES[outcome]
        with contextlib.suppress(BadRequest):
            await with_retries(lambda: query.answer(answer, show_alert=True))

    async def group_message(self, message: Message) -> None:
        """A reply to an alert in the doctors' group goes to that case's patient."""
        reply_to = message.reply_to_message
        if reply_to is None or message.from_user is None or not message.text:
            return
        case_id = await self.cases.store.case_of_alert(reply_to.message_id)
        if case_id is None:
            return
        sender = Sender(self.bot, message.chat_id, reply_to=message.message_id)
        actor = await self.links.actor(message.from_user.id)
        if actor is None:
            await sender.send("Not sent to the patient. " + NOT_LINKED)
            return
        await self._doctor_says(case_id, message.text, actor, sender)

    async def private_message(self, message: Message) -> bool:
        """A doctor's private message while holding a case; False for anyone else.

        Holding several cases, the doctor says which one: by replying to that patient's
        relayed message, or with /case N before the text. A message that names no case is
        never guessed at: the doctor is asked.
        """
        user = message.from_user
        if user is None or not message.text:
            return False
        actor = await self.links.actor(user.id)
        if actor is None or actor.staff_id is None:
            return False
        held = await self.cases.store.held_by(actor.staff_id)
        if not held:
            return False
        sender = Sender(self.bot, message.chat_id, reply_to=message.message_id)
        case_id, text = pick_case(held, message.text.strip(), message.reply_to_message)
        if case_id is None:
            listed = ", ".join(f"#{n}" for n in held)
            await sender.send(
                f"You hold cases {listed}. Reply to the patient's message you are answering, "
                f"or start with /case N, e.g. /case {held[0]} your message "
                f"(or /case {held[0]} /close NOTE)."
            )
        elif case_id not in held:
            await sender.send(f"You do not hold case #{case_id}. Your cases: {held}.")
        elif not text:
            await sender.send(f"Write /case {case_id} followed by your message to the patient.")
        else:
            await self._doctor_says(case_id, text, actor, sender)
        return True

    async def link(self, message: Message, code: str | None) -> None:
        """`/link CODE` in a private chat: this Telegram account becomes a staff account's
        (`code` None: too many messages from this chat just now)."""
        assert message.from_user is not None
        sender = Sender(self.bot, message.chat_id, reply_to=message.message_id)
        if code is None:
            await sender.send("Too many attempts. Wait a minute, then send the code again.")
            return
        if not code.strip():
            await sender.send("Send /link followed by the code from the dashboard's Telegram page.")
            return
        try:
            account = await self.links.link(code, message.from_user.id)
        except LinkRefused as exc:
            await sender.send(str(exc))
            return
        await sender.send(
            f"Linked: in Telegram you now act as {account.display_name} ({account.role.value}). "
            "Patients see that name. Unlink it any time in the dashboard."
        )

    async def _doctor_says(self, case_id: int, text: str, actor: Actor, sender: Sender) -> None:
        command = text.split(" ", 1)[0].split("@", 1)[0].lower() if text.startswith("/") else ""
        if command and command != "/close":
            await sender.send(
                f"You hold case #{case_id}: what you write goes to the patient. "
                "/close NOTE ends the case."
            )
            return
        if command == "/close":
            note = text.partition(" ")[2].strip() or "closed by the doctor"
            view = await self.cases.resolve(case_id, actor, note)
            await sender.send(
                f"Case #{case_id} resolved." if view else f"Case #{case_id} is not yours to close."
            )
            return
        if await self.cases.reply(case_id, actor, text):
            await sender.send(f"→ case #{case_id}")  # which patient it went to, every time
        else:
            await sender.send(f"Case #{case_id}: not delivered (claim the case first).")


_CASE_COMMAND = re.compile(r"^/case(?:@\w+)?\s+#?(\d+)\b\s*(.*)$", re.IGNORECASE | re.DOTALL)
_CASE_MENTION = re.compile(r"case #(\d+)")


def case_number(value: str) -> int | None:
    """A case number from button data or a command, or None: ASCII digits only ("²" passes
    str.isdigit but not int()) and small enough for the database's integer."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    number = int(value)
    return number if number > 0 else None


def pick_case(held: list[int], text: str, reply_to: Message | None) -> tuple[int | None, str]:
    """The case a doctor's private message is for, and the text to pass on.

    /case N first; then the case named in the bot's message it replies to (a relay
    "Patient (case #N): ..." or a confirmation "→ case #N"); then the only case held.
    """
    command = _CASE_COMMAND.match(text)
    if command:
        return case_number(command.group(1)), command.group(2).strip()
    quoted = reply_to.text if reply_to is not None and reply_to.text else ""
    mention = _CASE_MENTION.search(quoted)
    if mention:
        return case_number(mention.group(1)), text
    return (held[0], text) if len(held) == 1 else (None, text)
