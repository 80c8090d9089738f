"""Access reviews (campaigns and their items) arrive with the access-review issue."""
