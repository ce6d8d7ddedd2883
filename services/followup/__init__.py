"""Follow-up service: case state, legal deadlines, municipal cadences, caseload and worklists."""
