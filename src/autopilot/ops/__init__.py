"""Operating a study: status and watch, the control files, the daemon and cron entry, the report, the monitor."""
