"""The node agent: telemetry, minute records, signed hash-chained reports, the spool, the gate."""
