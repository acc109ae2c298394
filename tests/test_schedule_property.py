"""A property: whatever happens to a schedule, in whatever order, nobody is mailed twice.

Two workers on one ledger, started whenever the first operation needs them, a clock that
jumps, cancels and schedules again: each journalist gets each step at most once, a step
found later than its grace is never sent, and each step's state agrees with what went out.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from distribute.campaign import check_campaign, load_campaign
from distribute.channels.base import Aside, Channel, Envelope, Outcome
from distribute.config import load_settings
from distribute.errors import CampaignError
from distribute.ledger import Ledger
from distribute.scheduler import Worker, schedule_campaign

ROOT = Path(__file__).resolve().parents[1]
T = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)  # the first step; the second is 30 min later
GRACE = timedelta(minutes=20)
PEOPLE = 3


class Recording(Channel):
    """Stands in for the SMTP server: records who got which step."""

    live = True

    def __init__(self, received: Counter[tuple[str, str]]):
        self.received = received

    def deliver(self, envelope: Envelope, meanwhile: Aside | None = None) -> Outcome:
        # The Message-ID is one per (campaign, step, journalist): a repeat is a resend.
        self.received[(envelope.message_id, envelope.recipient)] += 1
        if meanwhile is not None:
            meanwhile()
        return Outcome("sent", 250, "queued")


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def workspace(folder: Path) -> Path:
    (folder / "recipients").mkdir()
    for name in ("desk", "wire"):
        rows = ["email,first_name"] + [f"{name}{n}@example.com,Jo" for n in range(PEOPLE)]
        (folder / "recipients" / f"{name}.csv").write_text("\n".join(rows) + "\n", "utf-8")
    shutil.copy(ROOT / "releases" / "hydrogen.md", folder / "hydrogen.md")
    (folder / "distribute.toml").write_text(
        '[sender]\nfrom = "Press <press@example.org>"\n[paths]\nrecipients = "recipients"\n',
        encoding="utf-8",
    )
    path = folder / "launch.toml"
    path.write_text(
        'name = "launch"\nrelease = "hydrogen.md"\nlate_grace = "20m"\n'
        '[[email]]\nname = "desk"\nlists = ["desk"]\nat = "2027-03-10T08:00Z"\n'
        '[[email]]\nname = "wire"\nlists = ["wire"]\nat = "2027-03-10T08:30Z"\n',
        encoding="utf-8",
    )
    return path


ADVANCE = st.tuples(st.just("advance"), st.integers(min_value=0, max_value=45))
FIRE = st.tuples(st.just("fire"), st.integers(min_value=0, max_value=1))
# Time passing and workers firing are what a schedule mostly meets: drawn more often.
OPERATIONS = st.lists(
    st.one_of(
        ADVANCE,
        FIRE,
        ADVANCE,
        FIRE,
        st.tuples(st.just("cancel"), st.sampled_from([None, "desk", "wire"])),
        st.tuples(st.just("schedule"), st.just(0)),
    ),
    min_size=2,
    max_size=10,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(min_value=-40, max_value=-1), operations=OPERATIONS)
def test_no_schedule_history_mails_anyone_twice(
    start: int, operations: list[tuple[str, object]]
) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = workspace(folder)
        config = load_settings(workspace=folder)
        clock = Clock(T + timedelta(minutes=start))
        received: Counter[tuple[str, str]] = Counter()
        ledger = Ledger(config.database_url, clock=clock)
        campaign = load_campaign(path, config)
        check = check_campaign(campaign, config, now=clock())
        modes = {"desk": "live", "wire": "live"}
        schedule_campaign(ledger, campaign, check, now=clock(), modes=modes)
        workers: dict[int, Worker] = {}
        try:
            for operation, value in operations:
                if operation == "advance":
                    clock.now += timedelta(minutes=int(value))  # type: ignore[call-overload]
                elif operation == "fire":
                    index = int(value)  # type: ignore[call-overload]
                    if index not in workers:
                        workers[index] = Worker(
                            config, clock=clock, channel_factory=lambda: Recording(received)
                        )
                    workers[index].run_due()
                elif operation == "cancel":
                    ledger.cancel("launch", None if value is None else [str(value)])
                else:
                    try:
                        check = check_campaign(campaign, config, now=clock())
                        schedule_campaign(ledger, campaign, check, now=clock(), modes=modes)
                    except CampaignError:
                        pass  # a step already past and not sent: refused, nothing changed
            assert all(count == 1 for count in received.values()), received  # nobody twice
            states = {step: state for (step, _mode), state in ledger.states("launch").items()}
            event(" ".join(f"{step}={state}" for step, state in sorted(states.items())))
            sent = 0
            for step in ("desk", "wire"):
                ref = ledger.step("launch", str(path), "UTC", step, "email", "live", T)
                counts = ledger.counts(ref)
                assert counts["sending"] == counts["uncertain"] == 0
                # Done means everyone got it; any other state (missed, cancelled, still
                # scheduled) means nobody did.
                assert counts["sent"] == (PEOPLE if states[step] == "done" else 0), states
                sent += counts["sent"]
            assert sent == len(received)  # the ledger and the server agree
        finally:
            for worker in workers.values():
                worker.close()
            ledger.close()
