"""The file-drop sensor: moves new inbox files to landing/<day>/ and requests one run per day touched.

The landing is `connectors.inbox.collect_inbox`; the sensor turns its cursor into fingerprints and what
was landed into run requests.
"""

import json

import dagster as dg

from aios_resources import InboxResource
from connectors.inbox import collect_inbox


@dg.sensor(job_name="claims_job", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Lands new claims files from the inbox and requests one run per day they belong to.")
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource) -> dg.SensorResult:
    """Lands new inbox files and requests one claims_job run per day they belong to."""
    s = inbox.settings
    tick = collect_inbox(s.inbox_dir, s.landing_dir, s.rejected_dir, json.loads(context.cursor) if context.cursor
                         else [])
    requests = [
        dg.RunRequest(partition_key=day, run_key=f"inbox:{day}:{'|'.join(sorted(fps))}",
                      tags={"aios/source": "inbox", "aios/files": str(len(fps))})
        for day, fps in sorted(tick.landed.items())
    ]
    if tick.rejected:
        context.log.warning(f"rejected {len(tick.rejected)} file(s): {tick.rejected}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(tick.seen))
