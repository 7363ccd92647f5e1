"""Operations (issue #8): audit log files, rotation and pruning, statistics,
the `xmailctl log` and `xmailctl stats` commands, and Prometheus metrics."""
