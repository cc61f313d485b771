"""``retention coverage``: personal-looking columns that no rule deletes or anonymises.

``detectors`` holds the pure tests (names, values, checksums); ``scan`` reflects, samples
and holds the findings against the policy; ``render`` turns a report into JSON data and
text. No sampled value is ever kept, logged or printed: only detector names and counts.
"""
