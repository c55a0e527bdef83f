# The admin's dates and times, in the project's screen form (core/timefmt.py, docs/time.md): ISO-like, UTC,
# to the second. Django's English default ("Nov. 29, 2026, 8:34 a.m.") drops the seconds that heartbeat and
# job timeouts are measured in.
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
