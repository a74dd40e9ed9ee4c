"""Partitions: claims are processed per submission day."""

import dagster as dg

from aios.kernel.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=get_settings().partition_start, end_offset=1)
