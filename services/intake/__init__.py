"""Intake: every underretning and case activity in, as events (spec sections 2, 3, 7, 8)."""
