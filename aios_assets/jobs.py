"""Jobs and schedules: the daily claims job, the training job, and the batch-scoring schedule."""

import dagster as dg

from aios_assets.partitions import daily_partitions

claims_job = dg.define_asset_job(
    "claims_job", selection=dg.AssetSelection.groups("claims"), partitions_def=daily_partitions,
    description="One day of claims from landing to decisions, review queue and payouts.",
)
training_job = dg.define_asset_job(
    "training_job", selection=dg.AssetSelection.groups("training"),
    description="Train and register the classifier, fit the Bayesian network, refresh the drift reference.",
)
daily_scoring_schedule = dg.build_schedule_from_partitioned_job(
    claims_job, hour_of_day=6, minute_of_hour=0, name="daily_batch_scoring",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
