"""Classification losses for fine-tuning on (pseudo-)labels: AAM-softmax and DLG-LC gating."""

from sslspk.losses.aam_softmax import AAMSoftmax, margin_at
from sslspk.losses.dlg_lc import (
                                  DEFAULT_THRESHOLD,
                                  GateResult,
                                  OnlineStep,
                                  correction_diagnostics,
                                  gate_and_correct,
                                  gmm_threshold,
                                  majority_speaker,
                                  online_gate_step,
)

__all__ = ["AAMSoftmax", "margin_at", "DEFAULT_THRESHOLD", "GateResult",
           "correction_diagnostics", "gate_and_correct", "majority_speaker", "OnlineStep", "gmm_threshold",
           "online_gate_step"]
