"""Planning, in the order a run meets it: the export plan, its chunks, estimates per source, plan files.

``export`` resolves one export of a config into an ``ExportPlan``; ``chunks`` cuts a
chunked or parallel export into bounded reads, from what the servers already know
(statistics, index dives, optimizer estimates) rather than a scan; ``mysql_estimates``
holds MySQL's index-dive estimates; ``files`` seals plans into files and applies them.
"""
