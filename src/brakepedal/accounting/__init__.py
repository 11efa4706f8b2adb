"""Compute accounting: FLOP bounds from attested hardware time, summed by run, lineage,
ownership group and site (DESIGN.md). Pure logic: values in, values out; the only file read is
the shipped accelerator catalogue."""
