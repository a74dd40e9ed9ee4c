"""The file-drop sensor: moves new inbox files to landing/<day>/ and requests one run per day touched."""


import json
from dataclasses import dataclass, field

import dagster as dg

from aios.kernel.settings import Settings
from aios_resources import InboxResource
from connectors.inbox import land_file, list_inbox, reject_file, triage_inbox_file

# Bounded cursor: fingerprints of the files landed most recently. Files leave the inbox when
# landed, so the cursor only has to cover a crash between landing and the cursor update.
CURSOR_KEEP = 2000
MAX_FILES_PER_TICK = 500


@dataclass
class InboxTick:
    """What one look at the inbox did: files landed per partition, files rejected, the new cursor."""

    landed: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


def collect_inbox(settings: Settings, seen: list[str]) -> InboxTick:
    """Land every new inbox file (or reject it with a reason); `seen` are fingerprints already handled."""
    tick = InboxTick(seen=list(seen))
    known = set(seen)
    for f in list_inbox(settings.inbox_dir)[:MAX_FILES_PER_TICK]:
        fp = f.fingerprint
        if fp in known:
            continue
        reason = triage_inbox_file(f)
        if reason is not None:
            reject_file(f, settings.rejected_dir, reason)
            tick.rejected.append(f.path.name)
        else:
            land_file(f, settings.landing_dir)
            tick.landed.setdefault(f.partition, []).append(fp)
        tick.seen.append(fp)
        known.add(fp)
    tick.seen = tick.seen[-CURSOR_KEEP:]
    return tick


@dg.sensor(job_name="claims_job", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Lands new claims files from the inbox and requests one run per day they belong to.")
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource) -> dg.SensorResult:
    """Lands new inbox files and requests one claims_job run per day they belong to."""
    seen = json.loads(context.cursor) if context.cursor else []
    tick = collect_inbox(inbox.settings, seen)
    requests = [
        dg.RunRequest(partition_key=day, run_key=f"inbox:{day}:{'|'.join(sorted(fps))}",
                      tags={"aios/source": "inbox", "aios/files": str(len(fps))})
        for day, fps in sorted(tick.landed.items())
    ]
    if tick.rejected:
        context.log.warning(f"rejected {len(tick.rejected)} file(s): {tick.rejected}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(tick.seen))
