"""The shared case-work engine: the pure rules of domain.md sections 3-5, used by every service.

calendar (working days, periods, month clamp), cadence (follow-up cadence profiles), deadlines (a
deadline and its state at any moment), rules (the deadline rules of section 4), model and child
(`project_child(events, profile_lookup, settings) -> ChildPicture`: a child's cases, underretninger
with their case attribution, caseworker history, phases and deadlines, from the SET of its events)
and views (JSON views of a picture). Pure Python, no I/O: the follow-up worklists and the
ledelsesinfo figures both derive from it, so they cannot disagree on a rule.
"""
