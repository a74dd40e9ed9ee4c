"""The models the service decides with, pinned at start and swapped atomically when they move.

At start the classifier is resolved through its MLflow alias (`champion` by default) and
loaded at exactly that version, with the current Bayesian network and the policy set; the
three form one immutable `Pinned`. A background thread checks the alias (and the network
file) at most every `check_seconds`; when either moved it loads the new model *beside* the
serving one and then replaces the reference in one assignment. A request reads the
reference once, so it is decided entirely by the old set or entirely by the new one, and no
request waits for a load or fails because of one. A failed check (registry down, network
file half-written) keeps the old set and is retried at the next check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aios.kernel.settings import Settings
from governance.policy import PolicySet, policy_set_in_force
from models.bayes import FraudNetwork
from aios.usecases.decision_models import decision_models
from models.decision import DecisionModels
from connectors.registry import RegisteredModel, resolve_alias

log = logging.getLogger("aios.service.pins")

DEFAULT_CHECK_SECONDS = 10.0


class NoModelPinned(RuntimeError):
    """No model could be pinned yet (nothing trained, or the registry is unreachable)."""


class PinCheckFailed(RuntimeError):
    """A check failed while a set was pinned; that set stays in service."""


@dataclass(frozen=True)
class Pinned:
    """One consistent set of decision models and where each came from."""

    models: DecisionModels
    classifier: RegisteredModel
    network_stamp: tuple[int, int]
    pinned_at: float

    @property
    def versions(self) -> dict[str, str]:
        """The versions every decision made with this set records."""
        return self.models.versions


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


class ModelPins:
    """The pinned decision models of one service process, refreshed in the background."""

    def __init__(self, settings: Settings, *, check_seconds: float = DEFAULT_CHECK_SECONDS,
                 policy_loader: Callable[[], PolicySet] = policy_set_in_force) -> None:
        """`policy_loader` gives the policy set pinned with the first models (the policy stays pinned)."""
        self.settings = settings
        self.check_seconds = float(check_seconds)
        self._policy_loader = policy_loader
        self._listeners: list[Callable[[Pinned, Pinned | None], None]] = []
        self._pinned: Pinned | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # reading ------------------------------------------------------------------------------------
    def current(self) -> Pinned:
        """The set to decide with now; NoModelPinned when none could be loaded yet."""
        pinned = self._pinned
        if pinned is None:
            raise NoModelPinned(self.last_error or "models not loaded yet")
        return pinned

    @property
    def ready(self) -> bool:
        """True once a set is pinned."""
        return self._pinned is not None

    def on_swap(self, listener: Callable[[Pinned, Pinned | None], None]) -> None:
        """Call `listener(new, old)` after every swap (the first pin has old None)."""
        self._listeners.append(listener)

    # refreshing ---------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Check the alias and the network now; load and swap in what moved. True when a swap happened.

        Errors are recorded in `last_error` and re-raised only when nothing is pinned yet.
        """
        with self._refresh_lock:  # one loader at a time; readers never take this lock
            old = self._pinned
            try:
                new = self._load_if_moved(old)
            except Exception as exc:  # noqa: BLE001 - any failure keeps serving the old set
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model pin check failed, keeping %s: %s",
                            old.versions if old else "nothing", self.last_error)
                if old is None:
                    raise NoModelPinned(self.last_error) from exc
                raise PinCheckFailed(self.last_error) from exc
            self.last_error = None
            if new is None:
                return False
            if old is not None and new.models is old.models:
                self._pinned = new  # same content rewritten: remember the new stamp, no swap
                return False
            self._pinned = new  # the atomic swap: one reference assignment
            log.info("pinned %s", new.versions)
            for listener in self._listeners:
                try:
                    listener(new, old)
                except Exception:  # noqa: BLE001 - a listener never undoes a swap
                    log.exception("pin listener failed")
            return True

    def _load_if_moved(self, old: Pinned | None) -> Pinned | None:
        s = self.settings
        ref = resolve_alias(s.mlflow_uri, s.model_name, s.model_alias)
        path = s.network_path()
        if not path.exists():
            raise FileNotFoundError(f"no Bayesian network at {path}: train first (`aios train`)")
        stamp = _stamp(path)
        if old is not None and ref.version == old.classifier.version and stamp == old.network_stamp:
            return None
        classifier = old.models.classifier if old is not None and ref.version == old.classifier.version else None
        if old is not None and stamp == old.network_stamp:
            network, compiled = old.models.network, old.models.compiled
        else:
            network, compiled = FraudNetwork.load(path), None
        policy = old.models.policy if old is not None else self._policy_loader()
        models = decision_models(s, s.model_name, ref.version, network, policy, classifier=classifier,
                                 compiled=compiled)
        if old is not None and models.versions == old.versions:
            # the file was rewritten with the same content: keep the stamp, nothing to swap
            return Pinned(old.models, old.classifier, stamp, old.pinned_at)
        return Pinned(models, ref, stamp, time.time())

    # background checking ------------------------------------------------------------------------
    def start(self) -> None:
        """Pin now if possible (a failure is tolerated: the checker keeps trying) and start the checker."""
        try:
            self.refresh()
        except (NoModelPinned, PinCheckFailed):
            pass
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="aios-model-pins", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the checker (in-flight requests keep the set they hold)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.check_seconds))
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.check_seconds):
            try:
                self.refresh()
            except (NoModelPinned, PinCheckFailed):
                pass  # recorded in last_error; retried at the next check
