"""What nsprim promises about containment, each promise tried the way an
attacker would try it.  One module per front end or attack surface; a reader
can take the test names as the list of guarantees (see shared/DESIGN.md's
security model)."""
