"""The pure domain of the follow-up service: calendar, cadences, deadlines, the child picture."""
