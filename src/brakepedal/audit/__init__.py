"""The independent auditor: re-verifies the log and every report, recomputes, finds."""
