"""Built-in run loggers (`train.loggers`): jsonl (metrics.jsonl), csv (results.csv), tensorboard.

Registration modules (`*_logger`) import no torch; each logger gets its run folder at `start`.
"""
