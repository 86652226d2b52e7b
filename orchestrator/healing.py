"""Every worker heals the system by itself: a thread runs the recovery pass periodically.

The pass runs under the recovery lease, so however many workers run this, one pass runs at a
time across all hosts; a worker that finds the lease held skips its turn. No scheduler (celery
beat) is needed: a deployment of only workers loses no run.
"""

from __future__ import annotations

import logging
import random
import threading

from django.db import Error, connection

from orchestrator import conf, outages, recovery
from orchestrator.errors import BrokerUnavailable

logger = logging.getLogger(__name__)


def next_delay(interval: float, rng: random.Random) -> float:
    """Seconds until the next pass: the interval, spread by a fifth either way so that workers
    started together do not all knock on the lease at once."""
    return interval * rng.uniform(0.8, 1.2)


def run_pass() -> recovery.RecoveryReport | None:
    """One pass if no other host is running one; None when the lease is held elsewhere."""
    report = recovery.recover_under_lease()
    if report is None:
        logger.debug("Recovery pass skipped: another pass holds the lease")
    return report


class Healer:
    """A daemon thread running :func:`run_pass` every ``ORCHESTRATOR_RECOVERY_INTERVAL`` s."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = float(
            conf.get("ORCHESTRATOR_RECOVERY_INTERVAL") if interval is None else interval
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()

    def start(self) -> bool:
        """Start the thread; False (and nothing started) when the interval is 0."""
        if self.interval <= 0:
            return False
        self._thread = threading.Thread(target=self._run, name="orchestrator-healer", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.wait(next_delay(self.interval, self._rng)):
                self._pass()
        finally:
            connection.close()

    def _pass(self) -> None:
        try:
            run_pass()
        except BrokerUnavailable as exc:
            logger.warning("Recovery pass skipped: %s", exc)
        except Error as exc:
            logger.warning("Recovery pass stopped: the database is unavailable (%s)", exc)
            outages.drop_connection()
        except Exception:  # the healer must outlive any one bad pass
            logger.exception("Recovery pass failed")
        finally:
            connection.close_if_unusable_or_obsolete()
