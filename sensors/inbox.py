"""The file-drop sensor: registers new inbox files' claims, moves the files to landing/<day>/ and requests
one run per day touched.

The landing is `connectors.inbox.collect_inbox`; the sensor turns its cursor into fingerprints and what
was landed into run requests. The claims are registered (`claim_identities`, one identity per claim
id across inbox, bus and API) BEFORE each file moves: should the daemon die after the move and before
the run request, the reconciliation sensor (sensors/bus.py) still sees the day's undecided claims.
"""

import json

import dagster as dg

from aios_resources import InboxResource, StoresResource
from connectors.inbox import collect_inbox


@dg.sensor(job_name="claims_job", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Lands new claims files from the inbox and requests one run per day they belong to.")
def inbox_sensor(context: dg.SensorEvaluationContext, inbox: InboxResource, stores: StoresResource
                 ) -> dg.SensorResult:
    """Lands new inbox files and requests one claims_job run per day they belong to."""
    from connectors.landing import max_registered_seq, register_file
    from sensors.bus import COVERS_TAG

    s = inbox.settings
    engine = stores.engine()
    tick = collect_inbox(s.inbox_dir, s.landing_dir, s.rejected_dir, json.loads(context.cursor) if context.cursor
                         else [], before_landing=lambda f: register_file(engine, f))
    requests = [
        dg.RunRequest(partition_key=day, run_key=f"inbox:{day}:{'|'.join(sorted(fps))}",
                      tags={"aios/source": "inbox", "aios/files": str(len(fps)),
                            COVERS_TAG: str(max_registered_seq(engine, day))})
        for day, fps in sorted(tick.landed.items())
    ]
    if tick.rejected:
        context.log.warning(f"rejected {len(tick.rejected)} file(s): {tick.rejected}")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(tick.seen))
