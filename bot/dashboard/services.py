"""What the dashboard's routes work with, built from the running CareBot."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from bot.cases.service import CaseService
from bot.dashboard.accounts import LockoutPolicy, StaffAccounts
from bot.dashboard.actions import CaseActions
from bot.dashboard.case_reads import CaseReads
from bot.dashboard.known_devices import KnownDevices
from bot.dashboard.login_throttle import LoginThrottle, ThrottlePolicy
from bot.dashboard.pages import Pages
from bot.dashboard.prompt_console import PromptConsole
from bot.dashboard.reauth import Reauth
from bot.dashboard.sessions import LoginSessions
from bot.dashboard.telegram_link import TelegramLinks
from bot.dashboard.two_factor import TwoFactor
from bot.prompt_preview import PromptPreview
from bot.runtime import Runtime
from bot.signing import Signer
from bot.triage.rules import TriageRules


@dataclass(frozen=True)
class DashboardServices:
    """Accounts, sign-ins, cases and prompts, configured from the runtime's settings."""

    accounts: StaffAccounts
    sessions: LoginSessions
    throttle: LoginThrottle
    cases: CaseService
    actions: CaseActions
    reads: CaseReads
    rules: TriageRules
    prompts: PromptConsole
    links: TelegramLinks
    two_factor: TwoFactor
    reauth: Reauth
    devices: KnownDevices
    pages: Pages
    heartbeat_s: float
    doctors_chat_configured: bool
    require_two_factor: bool

    @classmethod
    def of(cls, runtime: Runtime, pages: Pages) -> DashboardServices:
        """Build the services over the runtime's database and case service."""
        settings = runtime.settings
        policy = LockoutPolicy(
            settings.dashboard_account_lock_failures, settings.dashboard_lockout_s
        )
        throttle = ThrottlePolicy(
            per_client=settings.dashboard_login_attempts_per_client,
            overall=settings.dashboard_login_attempts_overall,
            window_s=settings.dashboard_lockout_s,
            per_name_failures=settings.dashboard_max_failed_logins,
        )
        accounts = StaffAccounts(runtime.storage, policy=policy)
        two_factor = TwoFactor(runtime.storage, policy=policy)
        return cls(
            accounts=accounts,
            sessions=LoginSessions(
                runtime.storage, settings.dashboard_session_idle_s, settings.dashboard_session_max_s
            ),
            throttle=LoginThrottle(throttle, runtime.limits),
            cases=runtime.cases,
            actions=CaseActions(runtime.cases),
            reads=CaseReads(runtime.storage),
            rules=runtime.engine.rules,
            prompts=PromptConsole(runtime.prompt_store, PromptPreview(runtime.engine)),
            links=TelegramLinks(runtime.storage),
            two_factor=two_factor,
            reauth=Reauth(accounts, two_factor),
            devices=KnownDevices(Signer.of(settings, "known-device")),
            pages=pages,
            heartbeat_s=settings.dashboard_heartbeat_s,
            doctors_chat_configured=settings.doctors_chat_id is not None,
            require_two_factor=settings.dashboard_require_two_factor,
        )


def services(request: Request) -> DashboardServices:
    """The dashboard's services, built on first use once the app's runtime has started."""
    state = request.app.state
    built: DashboardServices | None = getattr(state, "dashboard", None)
    if built is None or built.cases is not state.runtime.cases:  # a restarted app: rebuild
        built = state.dashboard = DashboardServices.of(state.runtime, state.dashboard_pages)
    return built
