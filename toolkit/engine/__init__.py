"""Training engine: the loop, checkpoints and evaluation (pure metric functions in `metrics`,
`classification_metrics` and `predictions`; they import no plugin)."""
