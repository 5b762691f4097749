"""Classification losses for fine-tuning on (pseudo-)labels: AAM-softmax and DLG-LC gating."""

from sslspk.losses.aam_softmax import AAMSoftmax, margin_at
from sslspk.losses.dlg_lc import (
                                  DEFAULT_THRESHOLD,
                                  GateResult,
                                  correction_diagnostics,
                                  gate_and_correct,
                                  majority_speaker,
)

__all__ = ["AAMSoftmax", "margin_at", "DEFAULT_THRESHOLD", "GateResult",
           "correction_diagnostics", "gate_and_correct", "majority_speaker"]
