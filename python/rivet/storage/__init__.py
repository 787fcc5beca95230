"""Where files go: fsspec destinations, staging of parts and their atomic publish."""
