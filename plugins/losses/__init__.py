"""Built-in losses: `forward(outputs, targets)` returns each named term (already weighted) plus `loss`.

Registration modules (`centernet`, `classification`, `regression`) import no torch; the
implementations (`*_loss.py`, `*_losses.py`) are imported by the factories when a loss is built.
"""
