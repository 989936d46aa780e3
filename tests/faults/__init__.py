"""The fault-injection suite: whole-pipeline tests that put eventd's services behind faults."""
