"""The one Definitions of the aios code location; workspace.yaml points here."""

import dagster as dg

from aios_assets import backtest, claims, documents, fusion_study, payouts, review, training
from aios_assets.backtest import backtest_job, backtest_summary_job, slo_job
from aios_assets.documents import documents_job
from aios.kernel.settings import get_settings
from aios_assets.executors import run_executor
from aios_assets.jobs import claims_job, daily_scoring_schedule, training_job
from aios_assets.payouts import payout_dispatch_job
from aios_assets.review import review_payouts_job
from aios_resources import build_resources
from sensors.alarms import alarm_sensor
from sensors.bus import landed_claims_sensor
from sensors.inbox import inbox_sensor
from sensors.payouts import payout_dispatch_sensor
from sensors.review import review_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([claims, training, review, payouts, backtest, fusion_study, documents]),
    jobs=[claims_job, training_job, review_payouts_job, payout_dispatch_job, backtest_job, backtest_summary_job, slo_job,
          documents_job],
    schedules=[daily_scoring_schedule],
    sensors=[inbox_sensor, landed_claims_sensor, review_sensor, alarm_sensor, payout_dispatch_sensor],
    resources=build_resources(),
    executor=run_executor(get_settings()),
)
